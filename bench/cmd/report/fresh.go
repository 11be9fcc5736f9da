package main

import (
	"fmt"
	"math"
	"strings"
)

// The sections of the freshness and payload scenarios (loopback only).

// Targets of the freshness features.
const (
	targetRefreshLoads = 1.1  // loads per TTL window with EarlyRefresh (10 windows: one extra load at most)
	targetNegLoads     = 1.05 // loads per missing id with NegativeTTL
)

// freshTargets are the rows of the targets table for the freshness
// scenarios.
func freshTargets(d dataset) []target {
	var ts []target
	n := "EarlyRefresh/impl=tiered-early"
	l := d.value(n, "loads/window")
	ts = append(ts, target{"Hot key, `EarlyRefresh(1)`: loads per 1 s TTL window across 4 instances", num(l, 2),
		"≈ 1 (≤ 1.10)", l / targetRefreshLoads, l <= targetRefreshLoads})
	w := d.value(n, "waited/window")
	ts = append(ts, target{"Hot key, `EarlyRefresh(1)`: reads per window that waited for a load", num(w, 1),
		"0", math.NaN(), w == 0})
	nl := d.value("Negative/impl=tiered-negative-ttl", "loads/id")
	ts = append(ts, target{"Negative caching, `NegativeTTL(1 min)`: loads per missing id across 4 instances", num(nl, 3),
		"≈ 1 (≤ 1.05)", nl / targetNegLoads, nl <= targetNegLoads})
	return ts
}

func (m *md) refreshSection(d dataset) {
	if !d.has("EarlyRefresh/") {
		return
	}
	m.p("## Hot key: early refresh")
	m.p("")
	m.p("4 instances (each its own `redis.Client` and Client) × 100 goroutines read one key with `Fetch`, each pausing")
	m.p("5 ms between reads, for 10 windows of the key's 1 s TTL (`TTLJitter: -1`, so that every window is exactly")
	m.p("one TTL); the loader sleeps 20 ms (the database). The first fill is not counted. `loads/window`: loader calls")
	m.p("across the 4 instances per TTL window (1 is the least that keeps the value fresh); `waited/window`: reads")
	m.p("that took longer than half the loader's time, i.e. waited for a load; `sync` / `background`: our loads run")
	m.p("for a waiting caller versus as a background refresh (`CacheStats.Loads` − `Refreshes`, `Refreshes`).")
	m.p("Latency: every read of every goroutine. sturdyc is in-process only (one per instance), with")
	m.p("`WithEarlyRefreshes(800ms, 900ms, 1s, 100ms)`: a read after 0.8–0.9 s starts a background refresh, one")
	m.p("after 1 s refreshes synchronously, as its TTL of 1 s would; its retry delay (100 ms) is longer than a load,")
	m.p("else a second refresh starts while the first is loading. Each sturdyc instance refreshes for itself, so the")
	m.p("least it can do is 4 loads per window. Runs: %d.", len(d["EarlyRefresh/impl=tiered-early"]["loads/window"]))
	m.p("")
	var rows [][]string
	u := func(v float64) string { return dur(1e3 * v) }
	for _, impl := range []struct{ name, what string }{
		{"tiered-expiry", "ours, plain expiry"},
		{"tiered-early", "ours, `EarlyRefresh(1)`"},
		{"tiered-early-stale", "ours, `EarlyRefresh(1)` + `ServeStale(1s)`"},
		{"sturdyc-early", "sturdyc, early refreshes"},
	} {
		n := "EarlyRefresh/impl=" + impl.name
		rows = append(rows, []string{"`" + impl.name + "`", impl.what, withCI(d.stat(n, "loads/window"), func(v float64) string { return num(v, 2) }),
			num(d.value(n, "waited/window"), 1), num(d.value(n, "sync-loads/window"), 2), num(d.value(n, "bg-loads/window"), 2),
			num(d.value(n, "reads/window"), 0), u(d.value(n, "p50-us")), u(d.value(n, "p99-us")), u(d.value(n, "p999-us")),
			num(d.value(n, "max-ms"), 1) + " ms", timeoutsCell(d, n)})
	}
	m.table([]string{"impl", "configuration", "loads/window", "waited/window", "sync loads", "background loads", "reads/window",
		"p50", "p99", "p99.9", "max", "timeouts"}, rows)
	m.p("A read that waits is one in several hundred, so it shows at p99.9 and max rather than at p99.")
	m.p("")
}

func (m *md) negativeSection(d dataset) {
	if !d.has("Negative/") {
		return
	}
	m.p("## Negative caching")
	m.p("")
	m.p("10,000 `Fetch`es of ids that do not exist (100 ids × 100 requests, in random order) from 25 goroutines on each")
	m.p("of 4 instances at once; the loader takes 2 ms to return `ErrNotFound`. A fresh set of ids per iteration (runs:")
	m.p("%d, of 3 iterations each in the full suite). Without `NegativeTTL`, concurrent requests for an id still",
		len(d["Negative/impl=tiered-none"]["loads/id"]))
	m.p("share one load (singleflight and the lease); every later request loads again.")
	m.p("")
	var rows [][]string
	for _, impl := range []struct{ name, what string }{
		{"tiered-negative-ttl", "`NegativeTTL(1 min)`"},
		{"tiered-none", "absences not cached"},
	} {
		n := "Negative/impl=" + impl.name
		rows = append(rows, []string{"`" + impl.name + "`", impl.what,
			withCI(d.stat(n, "loads/id"), func(v float64) string { return num(v, 2) }),
			num(d.value(n, "max-loads/id"), 0), num(100*d.value(n, "loads/request"), 2) + "%",
			dur(d.value(n, "ns/op") / 1e4), timeoutsCell(d, n)})
	}
	m.table([]string{"impl", "configuration", "loads/id", "most loads of one id", "loads / requests", "wall time / request", "timeouts"}, rows)
}

func (m *md) jitterSection(d dataset) {
	if !d.has("TTLJitter/") {
		return
	}
	m.p("## TTL jitter")
	m.p("")
	keys := d.value("TTLJitter/jitter=default", "keys")
	m.p("`Cache.Warm` writes %s values with a TTL of 60 s; then every key's `PTTL` is read back (pipelined) and the",
		num(keys, 0))
	m.p("keys are counted by the second in which they would expire. With the default `TTLJitter` (0.1) each TTL is")
	m.p("shortened by up to 10%%, spreading the expiries over about 6 s; with `TTLJitter: -1` they all fall in the")
	m.p("second or two the warm-up took. Nothing waits for the expiry itself.")
	m.p("")
	var rows [][]string
	for _, j := range []struct{ name, what string }{{"default", "`TTLJitter` 0.1 (default)"}, {"off", "`TTLJitter: -1`"}} {
		n := "TTLJitter/jitter=" + j.name
		rows = append(rows, []string{j.what, num(d.value(n, "busiest-second-keys"), 0), num(d.value(n, "busiest-second-%"), 1) + "%",
			num(d.value(n, "seconds-spanned"), 0), num(d.value(n, "warm-ms"), 0) + " ms"})
	}
	m.table([]string{"jitter", "keys expiring in the busiest second", "share of all", "seconds with expiries", "warm-up time"}, rows)
}

func (m *md) payloadSection(d dataset) {
	if !d.has("Payload/") {
		return
	}
	m.p("## Compression and encryption")
	m.p("")
	m.p("A list of users (`[]User`, the struct of the other scenarios with varied names, orgs, roles and dates) of about")
	m.p("10 KiB and 1 MiB of JSON, stored with `Cache.Set` and read with `Cache.Get` on a cache with `NoL1()` (every Get")
	m.p("reads Redis and decodes; `MaxValueBytes` raised to 8 MiB), plain and with `Compress(\"s2\"|\"zstd\", 0)` and")
	m.p("`Encrypt` (AES-256-GCM; with both, compression comes first). Floor: a bare go-redis `SET` of `json.Marshal`'s")
	m.p("output and `GET` + `json.Unmarshal` (`redis-json`). `stored`: the value's `STRLEN` in Redis. Per MiB: time per")
	m.p("MiB of the plain JSON. On loopback, where bytes cost little to move; on a network the smaller values also")
	m.p("save transfer time.")
	m.p("")
	for _, size := range payloadSizes {
		m.p("**%s**", strings.NewReplacer("KiB", " KiB", "MiB", " MiB").Replace(size))
		m.p("")
		base := "Payload/size=" + size + "/op="
		setFloor, getFloor := d.value(base+"set/impl=redis-json", "ns/op"), d.value(base+"get/impl=redis-json", "ns/op")
		var rows [][]string
		for _, impl := range payloadImpls {
			set, get := base+"set/impl="+impl, base+"get/impl="+impl
			stored, rel := d.value(set, "stored-B"), d.value(set, "stored/json")
			mib := stored / rel / (1 << 20) // the plain JSON's size in MiB
			rows = append(rows, []string{"`" + impl + "`", fmt.Sprintf("%s B", num(stored, 0)), ratio(rel),
				withCI(d.stat(set, "ns/op"), dur), dur(d.value(set, "ns/op") / mib), ratio(d.value(set, "ns/op") / setFloor),
				withCI(d.stat(get, "ns/op"), dur), dur(d.value(get, "ns/op") / mib), ratio(d.value(get, "ns/op") / getFloor)})
		}
		m.table([]string{"impl", "stored", "× JSON", "Set", "Set / MiB", "× bare SET", "Get", "Get / MiB", "× bare GET"}, rows)
	}
}
