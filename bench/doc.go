// Package bench holds the benchmark suite of tieredcache: each scenario
// runs the library beside its peers (raw ristretto, go-redis/cache,
// sturdyc, bare go-redis) in the same run, so that ratios are measured on
// the same machine at the same moment. The freshness and payload scenarios
// (a hot key under early refresh, negative caching, TTL jitter,
// compression and encryption) compare the library's options with each
// other, and with sturdyc's early refreshes and bare go-redis where those
// apply.
//
// The benchmarks live in the _test.go files of this package; cmd/report
// runs them and writes BENCHMARKS.md and chart.png. This is a module of its
// own so that the peers never enter the library's go.mod.
//
//	cd bench && ./run.sh          # the full suite, about 9 minutes on 2 cores
//	cd bench && ./run.sh -quick   # every benchmark a few iterations (CI)
//
// Loopback hides round trips, which cost about 0.5 ms on a real network, so
// run.sh runs the scenarios that reach Redis a second time through a delay
// line (internal/delayline) that holds every byte a fixed time each way. The
// test binary reads the one-way delay from BENCH_DELAY (for example 250us)
// and the line's address from BENCH_DELAY_ADDR; with BENCH_DELAY alone it
// starts a line of its own, whose CPU then counts as the client's:
//
//	BENCH_DELAY=250us go test -run '^$' -bench FetchMiss .
//
// Every scenario reaches Redis through redisClient, so ours and the peers
// always have the same client options and the same line.
package bench
