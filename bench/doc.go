// Package bench holds the benchmark suite of tieredcache: each scenario
// runs the library beside its peers (raw ristretto, go-redis/cache,
// sturdyc, bare go-redis) in the same run, so that ratios are measured on
// the same machine at the same moment.
//
// The benchmarks live in the _test.go files of this package; cmd/report
// runs them and writes BENCHMARKS.md and chart.png. This is a module of its
// own so that the peers never enter the library's go.mod.
//
//	cd bench && ./run.sh          # the full suite, about 4 minutes on 2 cores
//	cd bench && ./run.sh -quick   # every benchmark a few iterations (CI)
package bench
