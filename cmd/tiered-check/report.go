package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// examples is how many examples -v prints per line.
const examples = 3

type reporter struct {
	w      io.Writer
	a      *analysis
	failed []string // must-be-0 lines that are not 0
}

// report prints the table and reports whether a must-be-0 line is not 0.
func report(w io.Writer, a *analysis) bool {
	r := &reporter{w: w, a: a}
	r.header()
	r.totals()
	r.checks()
	if len(r.failed) > 0 {
		r.printf("\nFAIL: %d must-be-0 line(s) not 0: %s\n", len(r.failed), strings.Join(r.failed, "; "))
		return true
	}
	r.printf("\nPASS: every must-be-0 line is 0\n")
	return false
}

func (r *reporter) printf(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

func (r *reporter) header() {
	res := r.a.res
	o, l := res.o, res.lay
	faults := "off"
	if o.faults {
		faults = "on"
	}
	r.printf("tiered-check: %d worker processes x %d readers, %d keys (%d delete, %d set, %d foreign-setex, %d foreign-del), %v, faults %s\n",
		o.procs, o.readers, o.keys, l.NDelete, l.NSet, l.NFSetex, l.NFDelete, o.duration, faults)
	r.printf("  TTL %v, L1TTL %v, early refresh %v, serve stale %v, refetch %v, pub/sub only %v, loader 0-%v (slow 0-%v), a write every ~%v per writer, settle %v, seed %d\n",
		o.ttl, o.l1ttl, o.early, o.stale, o.refetch, o.pubsubOnly, o.loaderMax, o.slowMax, o.writeEvery, o.settle, o.seed)
	where := "started here"
	if res.external {
		where = "given with -redis"
	}
	r.printf("  cache Redis %s (redis-server %s, %s); source of truth: redis-server %s\n", res.cacheAddr, res.redisVer, where, res.truthAddr)
	r.printf("  run took %.1fs\n", res.elapsed.Seconds())
}

var kindOrder = []string{opFetch, opGet, opMany, opRefresh, opSet, opDelete, opSetex, opDel, opFinalGet, opFinalFetch}

func (r *reporter) totals() {
	a := r.a
	r.printf("\n%-34s %9s  %s\n", "operations", "count", "errors")
	for _, kind := range kindOrder {
		name := kind
		switch kind {
		case opGet:
			name = fmt.Sprintf("get (%d not found)", a.notFound)
		case opMany:
			name = "many (keys of FetchMany)"
		case opRefresh:
			name = "refresh (Fetch with Reload)"
		}
		var errs []string
		for key, n := range a.errsByKind {
			if strings.HasPrefix(key, kind+": ") {
				errs = append(errs, fmt.Sprintf("%s %d", strings.TrimPrefix(key, kind+": "), n))
			}
		}
		slices.Sort(errs)
		r.printf("  %-32s %9d  %s\n", name, a.opsByKind[kind], strings.Join(errs, ", "))
	}
	if a.res.o.verbose {
		var keys []string
		for k := range a.errSample {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			r.printf("    e.g. %s: %s\n", k, a.errSample[k])
		}
	}
	var parts []string
	total := 0
	for p, c := range a.invals {
		parts = append(parts, fmt.Sprintf("p%d %d keys + %d flushes", p, c.keys, c.flushes))
		total += c.keys + c.flushes
	}
	r.printf("%-36s %s\n", "invalidations applied (observe)", strings.Join(parts, ", "))
	parts = parts[:0]
	for p := range a.res.o.procs {
		s, ok := a.res.stats[p]
		if !ok {
			continue
		}
		var loads, lost, coalesced uint64
		for _, c := range s.Caches {
			loads += c.Loads
			lost += c.LeaseLost
			coalesced += c.Coalesced
		}
		parts = append(parts, fmt.Sprintf("p%d received %d, flushes gap %d down %d, redis errors %d, loads %d, coalesced %d, lease lost %d",
			p, s.InvalidationsReceived, s.FlushesGap, s.FlushesDown, s.RedisErrors, loads, coalesced, lost))
	}
	r.printf("%-36s %s\n", "library counters (Client.Stats)", strings.Join(parts, "\n"+strings.Repeat(" ", 37)))
	if total == 0 {
		r.printf("  NOTE: no invalidation was reported through observe.SetInvalidated: the library does not call\n" +
			"        observe.Invalidated, so check 2 had nothing to check and check 5 cannot see flushes\n")
	}
	parts = parts[:0]
	for _, k := range []string{faultRestart, faultKillPubSub, faultPause, faultSlow} {
		if n := a.faults[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	r.printf("%-36s %s\n", "faults injected", strings.Join(parts, ", "))
	for _, f := range a.res.faults {
		if f.skipped() || f.Err != "" || a.res.o.verbose {
			r.printf("    %s at %s..%s %s %s\n", f.Kind, r.at(f.Start), r.at(f.End), f.Note, f.Err)
		}
	}
}

// line prints one check line; must marks a must-be-0 line.
func (r *reporter) line(name string, vs []violation, must bool, describe func(violation) string) {
	mark := "no"
	if must {
		mark = "yes"
		if len(vs) > 0 {
			r.failed = append(r.failed, strings.TrimSpace(name))
		}
	}
	r.printf("  %-66s %7d   %s\n", name, len(vs), mark)
	if len(vs) > 0 && vs[0].Read.Kind != "" && isRead(vs[0].Read.Kind) {
		r.printf("      by key class: %s\n", byClass(vs))
	}
	if r.a.res.o.verbose {
		for _, v := range vs[:min(examples, len(vs))] {
			r.printf("      e.g. %s\n", describe(v))
		}
	}
}

func (r *reporter) checks() {
	a := r.a
	r.printf("\n%-68s %7s   %s\n", "check", "count", "must be 0")

	r.printf("1 reads that started after a write of the key returned in the same process\n  and returned an older version (read-your-writes)\n")
	groups := r.byWrite(a.c1, true)
	r.line("  after a Set", groups["set"], true, r.describe)
	r.line("  after a Delete", groups["delete"], true, r.describe)
	r.line("  after a Reload (Fetch with Reload returned v)", groups["refresh"], true, r.describe)
	r.line("  after a Reload during a fault (its write may have failed unseen)", groups["refresh-fault"], false, r.describe)
	r.line("  foreign-DEL keys (after a Reload; classic cache-aside race)", groups["fd"], false, r.describe)

	r.printf("2 reads that started after this process applied an invalidation of the key (or a\n  flush) that was applied after a write returned anywhere, and returned an older version\n")
	groups = r.byWrite(a.c2, true)
	r.line("  write was a Set", groups["set"], true, r.describe)
	r.line("  write was a Delete", groups["delete"], true, r.describe)
	r.line("  write was a Reload", groups["refresh"], true, r.describe)
	r.line("  write was a Reload during a fault (its write may have failed unseen)", groups["refresh-fault"], false, r.describe)
	r.line("  write was a foreign SETEX", groups[opSetex], true, r.describe)
	r.line("  foreign-DEL keys (classic cache-aside race: DEL cannot fence a load)", groups["fd"], false, r.describe)

	r.printf("3 reads that started after a write returned in another process (or the foreign writer)\n  and returned an older version; staleness = read start - write return\n")
	r.printf("  %-24s %9s %10s %10s %10s %10s\n", "write", "count", "p50", "p99", "p99.9", "max")
	groups = r.byWrite(a.c3, false)
	for _, kind := range []string{opSet, opDelete, opSetex, opDel, "all"} {
		vs := groups[kind]
		if kind == "all" {
			vs = a.c3
		}
		r.staleLine(kind, vs)
	}

	f := a.final
	r.printf("4 after quiescence: versions older than the truth\n")
	r.keyLine("  in the cache Redis as soon as every write had returned", f.stopStale, true)
	r.keyLine("    the same, keys with a failed write above it (replay pending?)", f.stopFailed, false)
	r.keyLine("    the same, foreign-DEL keys", f.stopStaleFD, false)
	r.printf("  after %v settle and every Client up:\n", a.res.o.settle)
	r.keyLine("  in the cache Redis", f.redisStale, true)
	r.keyLine("  in the cache Redis, not an Item", f.redisBad, true)
	r.opLine("  Get in a worker", f.getStale, true)
	r.opLine("  Fetch in a worker", f.fetchStale, true)
	r.opLine("  final reads that failed", f.failed, true)
	r.keyLine("  Clients not up before the final reads", f.notUp, true)
	r.opLine("  newer than the truth (a checker bug)", f.ahead, true)
	r.keyLine("  foreign-DEL keys in the cache Redis", f.redisStaleFD, false)
	r.opLine("  foreign-DEL keys in a worker (Get, Fetch)", append(slices.Clone(f.getStaleFD), f.fetchStaleFD...), false)

	r.printf("5 monotonic reads: a read that started after another read of the key in the same\n  process ended, and returned an older version; by the window it falls in\n")
	r.line("  all", a.c5, false, r.describeMono)
	by := map[string][]violation{}
	for _, v := range a.c5 {
		by[v.Why] = append(by[v.Why], v)
	}
	for _, why := range whyOrder {
		r.line("    "+why, by[why], false, r.describeMono)
	}
	r.line("    unexplained (no such window; expected 0, not in the exit status)", by[""], false, r.describeMono)
}

// byWrite groups violations by the kind of write that makes them stale;
// withFault puts refreshes that ran during a fault apart. Foreign-DEL keys
// go under "fd" (checks 1 and 2).
func (r *reporter) byWrite(vs []violation, withFault bool) map[string][]violation {
	out := map[string][]violation{}
	for _, v := range vs {
		g := v.Write.Kind
		switch {
		case withFault && v.Class == classForeignDel:
			g = "fd"
		case withFault && g == opRefresh && r.a.inFault(v.Write):
			g = "refresh-fault"
		}
		out[g] = append(out[g], v)
	}
	return out
}

func (r *reporter) staleLine(kind string, vs []violation) {
	ds := make([]time.Duration, len(vs))
	for i, v := range vs {
		ds[i] = v.staleness()
	}
	slices.Sort(ds)
	q := func(p float64) string {
		if len(ds) == 0 {
			return "-"
		}
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return fmtMs(ds[max(0, min(i, len(ds)-1))])
	}
	r.printf("  %-24s %9d %10s %10s %10s %10s\n", kind, len(vs), q(0.5), q(0.99), q(0.999), q(1))
	if r.a.res.o.verbose && kind != "all" {
		// The stalest first: those are the interesting ones.
		sorted := slices.Clone(vs)
		sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].staleness() > sorted[j].staleness() })
		for _, v := range sorted[:min(examples, len(sorted))] {
			r.printf("      e.g. %s\n", r.describe(v))
		}
	}
}

// byClass counts violations by the class of their key.
func byClass(vs []violation) string {
	var n [4]int
	for _, v := range vs {
		n[v.Class]++
	}
	var parts []string
	for c, k := range n {
		if k > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", keyClass(c), k))
		}
	}
	return strings.Join(parts, ", ")
}

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func (r *reporter) keyLine(name string, ks []int, must bool) {
	vs := make([]violation, len(ks))
	for i, k := range ks {
		vs[i] = violation{Read: Op{K: k}}
	}
	if len(ks) > 0 && !strings.Contains(name, "Clients") {
		// Which keys, and whose: a few are worth naming without -v.
		var named []string
		for _, k := range ks[:min(8, len(ks))] {
			named = append(named, fmt.Sprintf("%s (%s)", keyID(k), r.a.res.lay.class(k)))
		}
		name += ": " + strings.Join(named, ", ")
	}
	r.line(name, vs, must, func(v violation) string {
		res, k := r.a.res, v.Read.K
		if strings.Contains(name, "Clients") {
			return fmt.Sprintf("p%d", k)
		}
		if strings.Contains(name, "returned") || strings.HasPrefix(name, "    the same") {
			return fmt.Sprintf("%s: Redis v%d, truth v%d%s", keyID(k), res.redisStop[k], res.truthStop[k], r.origin(Op{P: foreign, K: k, V: res.redisStop[k], End: res.stop}))
		}
		return fmt.Sprintf("%s: Redis v%d, truth v%d", keyID(k), res.redisFinal[k], res.truthFinal[k])
	})
}

func (r *reporter) opLine(name string, ops []Op, must bool) {
	vs := make([]violation, len(ops))
	for i, o := range ops {
		vs[i] = violation{Read: o}
	}
	r.line(name, vs, must, func(v violation) string {
		return fmt.Sprintf("%s, truth v%d %s", r.op(v.Read), r.truthOf(v.Read.K), v.Read.Err)
	})
}

func (r *reporter) truthOf(k int) int64 {
	if k >= 0 && k < len(r.a.res.truthFinal) {
		return r.a.res.truthFinal[k]
	}
	return 0
}

// at formats a time relative to the start of the workload.
func (r *reporter) at(t int64) string {
	return fmt.Sprintf("%.3fms", float64(t-r.a.res.start)/float64(time.Millisecond))
}

func proc(p int) string {
	if p == foreign {
		return "foreign"
	}
	return fmt.Sprintf("p%d", p)
}

func (r *reporter) op(o Op) string {
	return fmt.Sprintf("%s %s %s v%d [%s..%s]", proc(o.P), o.Kind, keyID(o.K), o.V, r.at(o.Start), r.at(o.End))
}

// describe explains a violation of checks 1-3: the read, the write, the
// invalidation, and where in this process the version read came from.
func (r *reporter) describe(v violation) string {
	s := fmt.Sprintf("read %s after %s", r.op(v.Read), r.op(v.Write))
	if v.Inval != 0 {
		what := "invalidation of the key"
		if v.Flush {
			what = "flush"
		}
		s += fmt.Sprintf(", %s applied in %s at %s", what, proc(v.Read.P), r.at(v.Inval))
	}
	return s + r.origin(v.Read)
}

func (r *reporter) describeMono(v violation) string {
	return fmt.Sprintf("read %s after read %s%s", r.op(v.Read), r.op(v.Prev), r.origin(v.Read))
}

// origin says which loads (in any process) read the version returned
// from the truth, and which write made it stale, for judging a violation.
func (r *reporter) origin(o Op) string {
	x := r.a.idx
	var parts []string
	if o.K >= 0 && o.K < x.keys {
		var ls []string
		for _, l := range x.loadsOf[o.K][o.V] {
			if l.Start <= o.End {
				ls = append(ls, fmt.Sprintf("%s at %s", proc(l.P), r.at(l.Start)))
			}
		}
		if len(ls) > 3 {
			ls = append([]string{fmt.Sprintf("(%d more)", len(ls)-3)}, ls[len(ls)-3:]...)
		}
		if len(ls) > 0 {
			parts = append(parts, fmt.Sprintf("v%d read from the truth by %s", o.V, strings.Join(ls, ", ")))
		}
		if w, ok := x.byVersion[o.K][o.V+1]; ok {
			parts = append(parts, fmt.Sprintf("v%d written by %s %s [%s..%s] %s", w.V, proc(w.P), w.Kind, r.at(w.Start), r.at(w.End), w.Err))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}
