package main

import "fmt"

// The sections of the scenarios that reach Redis, rendered for each pass:
// h is the heading's level ("##" on loopback, "###" through the delay
// line).

// timeoutsCell is the operations of a benchmark that timed out, over all
// its runs.
func timeoutsCell(d dataset, name string) string {
	if _, ran := d[name]; !ran {
		return "–"
	}
	cell := fmt.Sprintf("%.0f", sum(d[name]["timeouts"]))
	if u := sum(d[name]["unavailable"]); u > 0 {
		cell += fmt.Sprintf(" (+%.0f unavailable)", u)
	}
	return cell
}

func sum(vs []float64) float64 {
	var n float64
	for _, v := range vs {
		n += v
	}
	return n
}

func (m *md) l2Section(d dataset, h string) {
	m.p("%s L2 hit", h)
	m.p("")
	m.p("The same key read from Redis with the in-process tier skipped (`tiered.NoL1()`). Floor: a bare go-redis")
	m.p("`GET` and `json.Unmarshal` (`redis-get-json`). go-redis/cache without a local cache, with its default codec")
	m.p("(msgpack, s2 above 64 bytes) and with JSON.")
	m.p("")
	var rows [][]string
	floor := d.value("L2Hit/impl=redis-get-json", "ns/op")
	for _, impl := range []string{"redis-get-json", "tiered", "go-redis-cache", "go-redis-cache-json"} {
		n := "L2Hit/impl=" + impl
		rows = append(rows, []string{"`" + impl + "`", withCI(d.stat(n, "ns/op"), dur), ratio(d.value(n, "ns/op") / floor),
			num(d.value(n, "B/op"), 0), num(d.value(n, "allocs/op"), 0)})
	}
	m.table([]string{"impl", "time/op", "× floor", "B/op", "allocs/op"}, rows)
	m.p("Paired: ours %s, floor %s per call: **%s**.", dur(d.value("L2Hit/impl=paired", "ours-ns")),
		dur(d.value("L2Hit/impl=paired", "floor-ns")), ratio(d.value("L2Hit/impl=paired", "ratio")))
	m.p("")
}

func (m *md) missSection(d dataset, h string) {
	m.p("%s Fetch on a miss", h)
	m.p("")
	m.p("A fresh id every iteration, in neither tier, with a loader that answers at once: what the read-through path")
	m.p("costs beyond the loader. Floor: `GET` (a miss) then `SET` with a TTL (`redis-get-set`). Ours also takes a")
	m.p("cross-process lease and fills under it; go-redis/cache `Once` is `GET` + `SET` behind an in-process")
	m.p("singleflight. `RTs/op`: network round trips per fetch (commands, pipelines and transactions the go-redis")
	m.p("client sent, counted by a hook); `cmds/op`: commands Redis ran per fetch (`INFO commandstats`, the commands")
	m.p("scripts call included). On a network each round trip costs about 0.5 ms, which loopback hides.")
	m.p("")
	var rows [][]string
	floor := d.value("FetchMiss/impl=redis-get-set", "ns/op")
	for _, impl := range []string{"redis-get-set", "tiered", "go-redis-cache"} {
		n := "FetchMiss/impl=" + impl
		v := d.value(n, "ns/op")
		rows = append(rows, []string{"`" + impl + "`", withCI(d.stat(n, "ns/op"), dur), ratio(v / floor),
			dur(v - floor), num(d.value(n, "RTs/op"), 2), num(d.value(n, "cmds/op"), 2),
			num(d.value(n, "B/op"), 0), num(d.value(n, "allocs/op"), 0), timeoutsCell(d, n)})
	}
	m.table([]string{"impl", "time/op", "× floor", "over floor", "RTs/op", "cmds/op", "B/op", "allocs/op", "timeouts"}, rows)
	m.p("Paired (blocks of 10 fetches of the floor and of ours alternate): ours %s, floor %s per fetch: **%s**.",
		dur(d.value("FetchMiss/impl=paired", "ours-ns")), dur(d.value("FetchMiss/impl=paired", "floor-ns")),
		ratio(d.value("FetchMiss/impl=paired", "ratio")))
	m.p("")
}

func (m *md) stampedeSection(d dataset, h string) {
	m.p("%s Stampede", h)
	m.p("")
	m.p("4 instances (each its own `redis.Client` and cache) × 250 goroutines ask at once for one cold key whose loader")
	m.p("takes 50 ms; a fresh key per iteration. `loads/op`: loader calls across all instances per stampede. Latency:")
	m.p("each caller's own call, over all callers of all iterations. go-redis/cache guards each process with")
	m.p("singleflight only; sturdyc (in-process only) is one per instance.")
	m.p("")
	var rows [][]string
	msCell := func(v float64) string { return num(v, 1) + " ms" }
	for _, impl := range []string{"tiered", "go-redis-cache", "sturdyc"} {
		n := "Stampede/impl=" + impl
		rows = append(rows, []string{"`" + impl + "`", num(d.value(n, "loads/op"), 2),
			withCI(d.stat(n, "p50-ms"), msCell), withCI(d.stat(n, "p99-ms"), msCell),
			num(d.value(n, "max-ms"), 1) + " ms", ratio(d.value(n, "p99-ms") / targetStampedeP99), timeoutsCell(d, n)})
	}
	m.table([]string{"impl", "loads/op", "p50", "p99", "max", "p99 / 75 ms", "timeouts"}, rows)
}

func (m *md) invalidationSection(d dataset, h string) {
	m.p("%s Invalidation", h)
	m.p("")
	m.p("Instance B holds the key in L1; instance A deletes it; B reads in a loop (1 µs sleep between reads, about")
	m.p("30 µs in practice: a spinning reader starves the receiving goroutine on 2 cores) until a read no longer")
	m.p("returns its copy. Latency from `Delete` returning (zero when the message beat the reply), and from `Delete`")
	m.p("being called. Floor (`redis-pubsub`): bare go-redis `PUBLISH` of a message of the same size to a")
	m.p("`ReceiveMessage` loop on another connection, the publisher polling for its arrival the same way;")
	m.p("`redis-pubsub-direct`: the same with the arrival time stamped by the receiver itself (no polling).")
	m.p("")
	var rows [][]string
	u := func(v float64) string { return num(v, 1) + " µs" }
	for _, impl := range []string{"tiered", "redis-pubsub", "redis-pubsub-direct"} {
		n := "Invalidation/impl=" + impl
		rows = append(rows, []string{"`" + impl + "`", withCI(d.stat(n, "p50-us"), u), withCI(d.stat(n, "p99-us"), u),
			withCI(d.stat(n, "call-p50-us"), u), withCI(d.stat(n, "call-p99-us"), u)})
	}
	m.table([]string{"impl", "p50 from return", "p99 from return", "p50 from call", "p99 from call"}, rows)
	m.p("Ours over the floor (`redis-pubsub`), p99 from return: %s; from call: %s. A `Delete` is a script (DEL of the",
		ratio(d.value("Invalidation/impl=tiered", "p99-us")/d.value("Invalidation/impl=redis-pubsub", "p99-us")),
		ratio(d.value("Invalidation/impl=tiered", "call-p99-us")/d.value("Invalidation/impl=redis-pubsub", "call-p99-us")))
	m.p("key and its lease, and the PUBLISH), so the from-call figures include more than a PUBLISH.")
	m.p("")
}

// zipfImpls are the rows of the Zipf tables.
var zipfImpls = []string{"tiered", "tiered-refetch", "go-redis-cache", "sturdyc"}

func (m *md) zipfSection(d dataset, h string) {
	m.p("%s Zipf workload", h)
	m.p("")
	m.p("100,000 keys, Zipf popularity (s = 1.1), 95%% reads (read-through) / 5%% writes (replace the value), from 4")
	m.p("goroutines per P spread over 4 instances sharing one Redis. Redis starts filled, the in-process tiers empty")
	m.p("and warmed by 50,000 operations before timing. Hit ratios are shares of reads; ours from `Client.Stats()`;")
	m.p("go-redis/cache's L1 share is the reads its Redis stats do not count. **Neither peer keeps instances")
	m.p("consistent**: go-redis/cache's local copies are never invalidated by another instance's write, and sturdyc")
	m.p("here is in-process only; ours drops every other instance's copy on a write, which is what its lower L1")
	m.p("share pays for.")
	m.p("")
	var rows [][]string
	for _, impl := range zipfImpls {
		n := "Zipf/impl=" + impl
		rows = append(rows, []string{"`" + impl + "`",
			withCI(d.stat(n, "ops/s"), func(v float64) string { return fmt.Sprintf("%.0f", v) }),
			dur(1e3 * d.value(n, "p50-us")), dur(1e3 * d.value(n, "p99-us")),
			num(d.value(n, "l1-hit-%"), 1) + "%", num(d.value(n, "l2-hit-%"), 1) + "%", num(d.value(n, "miss-%"), 2) + "%",
			num(d.value(n, "allocs/op"), 0), timeoutsCell(d, n)})
	}
	m.table([]string{"impl", "ops/s (higher is better)", "p50", "p99", "L1 hits", "L2 hits", "misses", "allocs/op", "timeouts"}, rows)
	m.p("Ours per operation: %s invalidations received, %s L1 installs dropped (ristretto's buffer full), %s refused by",
		num(d.value("Zipf/impl=tiered", "inval-recv/op"), 3), num(d.value("Zipf/impl=tiered", "l1-dropped/op"), 4),
		num(d.value("Zipf/impl=tiered", "l1-rejected/op"), 4))
	m.p("its admission policy. `tiered-refetch` is ours with `Options.RefetchInvalidated`: a changed key this")
	m.p("instance had served in-process is read again at once in the background (%s refetches per operation).",
		num(d.value("Zipf/impl=tiered-refetch", "refetch/op"), 3))
	m.p("")
	m.p("**CPU per operation**, steadier than ops/s on a shared machine: this process's user + system time")
	m.p("(`getrusage`, all instances and their background goroutines) and Redis's (`INFO cpu`, `used_cpu_user` +")
	m.p("`used_cpu_sys`) over the timed operations, divided by them. sturdyc does not use Redis: its Redis figure is")
	m.p("the server's idle cost.")
	m.p("")
	rows = nil
	floor := d.value("Zipf/impl=go-redis-cache", "cpu-us/op")
	for _, impl := range zipfImpls {
		n := "Zipf/impl=" + impl
		us := func(v float64) string { return num(v, 2) + " µs" }
		rows = append(rows, []string{"`" + impl + "`", withCI(d.stat(n, "client-us/op"), us), withCI(d.stat(n, "redis-us/op"), us),
			withCI(d.stat(n, "cpu-us/op"), us), ratio(d.value(n, "cpu-us/op") / floor)})
	}
	m.table([]string{"impl", "client CPU/op", "Redis CPU/op", "total CPU/op", "total × go-redis/cache"}, rows)
}

// problemsSection lists groups that failed and benchmarks whose
// operations timed out, if any.
func (m *md) problemsSection(e env, passes ...namedSet) {
	var lines []string
	for _, f := range e.Failures {
		lines = append(lines, "- group "+f)
	}
	for _, p := range passes {
		for _, name := range sortedNames(p.d) {
			if n := sum(p.d[name]["timeouts"]); n > 0 {
				lines = append(lines, fmt.Sprintf("- %s (%s): %.0f operations timed out over %d runs (the runs went on)",
					name, p.name, n, len(p.d[name]["timeouts"])))
			}
			if n := sum(p.d[name]["unavailable"]); n > 0 {
				lines = append(lines, fmt.Sprintf("- %s (%s): %.0f operations of ours found Redis unavailable (`tiered.ErrUnavailable`, its circuit breaker open after timeouts) over %d runs",
					name, p.name, n, len(p.d[name]["unavailable"])))
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	m.p("## Failures and timeouts")
	m.p("")
	m.p("Operations that ran out of time (the clients' 1 s socket timeouts, or a pool wait) are counted and the")
	m.p("benchmark goes on; a group whose test binary failed is listed and the run goes on. Figures of an affected")
	m.p("benchmark cover the operations that completed; a missing one shows as –.")
	m.p("")
	for _, l := range lines {
		m.p("%s", l)
	}
	m.p("")
}

// namedSet is the dataset of one pass.
type namedSet struct {
	name string
	d    dataset
}
