package main

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"time"
)

// recoveryAfterFault is how long after a fault its effects may last: the
// subscription is pinged every HealthCheckInterval (1s by default) and a
// lost one is noticed within two.
const recoveryAfterFault = 2 * time.Second

// violation is a read that returned an older version than a rule demands,
// with the write that makes it stale.
type violation struct {
	Read  Op
	Write Op    // the write (or refresh) whose version the read is older than
	Inval int64 // check 2: when the invalidation the read followed was applied
	Flush bool  // check 2: that invalidation was a flush of everything
	Class keyClass
	Why   string // check 5: the window it falls in; "" = unexplained
	Prev  Op     // check 5: the earlier read that returned a newer version
}

// staleness of a check 3 violation: from the write's return to the read's
// start.
func (v violation) staleness() time.Duration { return time.Duration(v.Read.Start - v.Write.End) }

// analysis is what the checks found.
type analysis struct {
	res *result
	idx *index

	c1, c2, c3, c5 []violation
	final          finalCheck

	opsByKind  map[string]int
	errsByKind map[string]int // "kind: class"
	errSample  map[string]string
	notFound   int // Get found nothing (neither stale nor fresh)
	invals     []invalCount
	faults     map[string]int
}

type invalCount struct{ keys, flushes int }

// finalCheck is check 4: the state after quiescence.
type finalCheck struct {
	stopStale, stopFailed, stopStaleFD []int // keys stale in Redis when the writers stopped
	redisStale, redisBad, redisStaleFD []int // keys
	getStale, fetchStale               []Op  // final reads older than the truth
	getStaleFD, fetchStaleFD           []Op
	ahead                              []Op // newer than the truth: a checker bug
	failed                             []Op // final reads that returned an error
	notUp                              []int
}

// index arranges a run's log for the checks.
type index struct {
	procs, keys int
	reads       [][][]Op         // [p][k] reads that succeeded, by start
	writes      [][]Op           // [k] writes that succeeded (refreshes included), by end
	failed      [][]Op           // [k] writes that returned an error, by start
	byVersion   []map[int64]Op   // [k] every write by its version
	invals      [][][]int64      // [p][k] times of applied invalidations
	flushes     [][]int64        // [p] times of applied flushes
	loads       [][][]Op         // [p][k]
	loadsOf     []map[int64][]Op // [k] loads by the version they read, all processes
	down        [][]window       // [p] when Client.RedisUp was false
	finals      [][]Op           // [p]
	faults      []window         // each fault, with its recovery time
}

func newIndex(res *result) *index {
	P, K := res.o.procs, res.o.keys
	x := &index{procs: P, keys: K,
		reads: make([][][]Op, P), writes: make([][]Op, K), failed: make([][]Op, K),
		byVersion: make([]map[int64]Op, K), loadsOf: make([]map[int64][]Op, K),
		invals: make([][][]int64, P), flushes: make([][]int64, P), loads: make([][][]Op, P),
		down: make([][]window, P), finals: make([][]Op, P)}
	for k := range K {
		x.byVersion[k] = map[int64]Op{}
		x.loadsOf[k] = map[int64][]Op{}
	}
	for p := range P {
		x.reads[p] = make([][]Op, K)
		x.invals[p] = make([][]int64, K)
		x.loads[p] = make([][]Op, K)
	}
	upDown := make([][]Op, P)
	for _, o := range res.ops {
		inProc := o.P >= 0 && o.P < P
		switch {
		case o.Kind == opFinalGet || o.Kind == opFinalFetch:
			x.finals[o.P] = append(x.finals[o.P], o)
			continue
		case o.Kind == opLoad:
			x.loads[o.P][o.K] = append(x.loads[o.P][o.K], o)
			x.loadsOf[o.K][o.V] = append(x.loadsOf[o.K][o.V], o)
			continue
		case o.Kind == opInval && o.K < 0:
			x.flushes[o.P] = append(x.flushes[o.P], o.Start)
			continue
		case o.Kind == opInval:
			x.invals[o.P][o.K] = append(x.invals[o.P][o.K], o.Start)
			continue
		case o.Kind == opUp || o.Kind == opDown:
			upDown[o.P] = append(upDown[o.P], o)
			continue
		}
		if isRead(o.Kind) && inProc && o.ok() {
			x.reads[o.P][o.K] = append(x.reads[o.P][o.K], o)
		}
		if isWrite(o.Kind) {
			switch {
			case o.ok() && (o.Kind != opRefresh || o.V > 0):
				x.writes[o.K] = append(x.writes[o.K], o)
			case !o.ok() && o.Kind != opRefresh && o.V > 0:
				x.failed[o.K] = append(x.failed[o.K], o)
			}
			if o.Kind != opRefresh && o.V > 0 {
				x.byVersion[o.K][o.V] = o
			}
		}
	}
	byStart := func(a, b Op) int { return cmp.Compare(a.Start, b.Start) }
	byEnd := func(a, b Op) int { return cmp.Compare(a.End, b.End) }
	for k := range K {
		slices.SortFunc(x.writes[k], byEnd)
		slices.SortFunc(x.failed[k], byStart)
		for _, ls := range x.loadsOf[k] {
			slices.SortFunc(ls, byStart)
		}
	}
	for p := range P {
		for k := range K {
			slices.SortFunc(x.reads[p][k], byStart)
			slices.Sort(x.invals[p][k])
			slices.SortFunc(x.loads[p][k], byEnd)
		}
		slices.Sort(x.flushes[p])
		slices.SortFunc(upDown[p], byStart)
		downAt := int64(-1)
		for _, o := range upDown[p] {
			switch {
			case o.Kind == opDown && downAt < 0:
				downAt = o.Start - int64(pollEvery)
			case o.Kind == opUp && downAt >= 0:
				x.down[p] = append(x.down[p], window{downAt, o.Start})
				downAt = -1
			}
		}
		if downAt >= 0 {
			x.down[p] = append(x.down[p], window{downAt, 1<<63 - 1})
		}
	}
	for _, f := range res.faults {
		end := f.End + int64(recoveryAfterFault+2*res.o.l1ttl)
		if f.Kind == faultSlow {
			end = f.End + int64(res.o.slowMax)
		}
		x.faults = append(x.faults, window{f.Start, end})
	}
	return x
}

// maxIndex answers, over writes sorted by end, "the newest version among
// those that returned before t" and "the first to return that is newer
// than v".
type maxIndex struct {
	ops  []Op
	maxV []int64
	arg  []int
}

func newMaxIndex(ops []Op) maxIndex {
	m := maxIndex{ops: ops, maxV: make([]int64, len(ops)), arg: make([]int, len(ops))}
	for i, o := range ops {
		m.maxV[i], m.arg[i] = o.V, i
		if i > 0 && m.maxV[i-1] >= o.V {
			m.maxV[i], m.arg[i] = m.maxV[i-1], m.arg[i-1]
		}
	}
	return m
}

// before returns the write with the newest version among those that ended
// strictly before t.
func (m maxIndex) before(t int64) (Op, bool) {
	i := sort.Search(len(m.ops), func(i int) bool { return m.ops[i].End >= t }) - 1
	if i < 0 {
		return Op{}, false
	}
	return m.ops[m.arg[i]], true
}

// firstAbove returns the earliest-ending write whose version is above v.
func (m maxIndex) firstAbove(v int64) (Op, bool) {
	i := sort.Search(len(m.maxV), func(i int) bool { return m.maxV[i] > v })
	if i == len(m.ops) {
		return Op{}, false
	}
	return m.ops[i], true
}

func filterOps(ops []Op, keep func(Op) bool) []Op {
	var out []Op
	for _, o := range ops {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// lastBefore returns the last time in sorted ts that is before t.
func lastBefore(ts []int64, t int64) (int64, bool) {
	i := sort.Search(len(ts), func(i int) bool { return ts[i] >= t }) - 1
	if i < 0 {
		return 0, false
	}
	return ts[i], true
}

func anyIn(ts []int64, from, to int64) bool {
	i := sort.Search(len(ts), func(i int) bool { return ts[i] >= from })
	return i < len(ts) && ts[i] <= to
}

func overlaps(ws []window, from, to int64) bool {
	for _, w := range ws {
		if w.From <= to && from <= w.To {
			return true
		}
	}
	return false
}

func analyze(res *result) *analysis {
	a := &analysis{res: res, idx: newIndex(res),
		opsByKind: map[string]int{}, errsByKind: map[string]int{}, errSample: map[string]string{},
		faults: map[string]int{}}
	a.totals()
	x := a.idx
	for k := range x.keys {
		class := res.lay.class(k)
		all := newMaxIndex(x.writes[k])
		for p := range x.procs {
			own := newMaxIndex(filterOps(x.writes[k], func(o Op) bool { return o.P == p }))
			others := newMaxIndex(filterOps(x.writes[k], func(o Op) bool { return o.P != p && o.Kind != opRefresh }))
			for _, r := range x.reads[p][k] {
				if r.V == 0 {
					continue // not found: neither stale nor fresh
				}
				// 1: after this process's own write returned.
				if w, ok := own.before(r.Start); ok && r.V < w.V {
					a.c1 = append(a.c1, violation{Read: r, Write: w, Class: class})
				}
				// 2: after an invalidation applied after a write returned.
				ti, okI := lastBefore(x.invals[p][k], r.Start)
				tf, okF := lastBefore(x.flushes[p], r.Start)
				if okI || okF {
					t, flush := ti, false
					if okF && (!okI || tf > ti) {
						t, flush = tf, true
					}
					if w, ok := all.before(t); ok && r.V < w.V {
						a.c2 = append(a.c2, violation{Read: r, Write: w, Inval: t, Flush: flush, Class: class})
					}
				}
				// 3: after another process's write returned.
				if w, ok := others.firstAbove(r.V); ok && w.End < r.Start {
					a.c3 = append(a.c3, violation{Read: r, Write: w, Class: class})
				}
			}
			a.monotonic(p, k)
		}
	}
	a.final = a.finalState()
	return a
}

func (a *analysis) totals() {
	for _, o := range a.res.ops {
		switch o.Kind {
		case opInval, opUp, opDown, opLoad:
			continue
		}
		a.opsByKind[o.Kind]++
		if o.Kind == opGet && o.ok() && o.V == 0 {
			a.notFound++
		}
		if !o.ok() {
			class := o.Err
			if i := strings.Index(class, ":"); i >= 0 {
				class = class[:i]
			}
			key := o.Kind + ": " + class
			a.errsByKind[key]++
			if _, ok := a.errSample[key]; !ok {
				a.errSample[key] = o.Err
			}
		}
	}
	a.invals = make([]invalCount, a.res.o.procs)
	for _, o := range a.res.ops {
		if o.Kind == opInval {
			if o.K < 0 {
				a.invals[o.P].flushes++
			} else {
				a.invals[o.P].keys++
			}
		}
	}
	for _, f := range a.res.faults {
		if !f.skipped() {
			a.faults[f.Kind]++
		}
	}
}

// monotonic is check 5 for process p and key k: a read that returned an
// older version than a read that ended before it started.
func (a *analysis) monotonic(p, k int) {
	x := a.idx
	reads := filterOps(x.reads[p][k], func(o Op) bool { return o.V > 0 })
	byEnd := slices.Clone(reads)
	slices.SortFunc(byEnd, func(a, b Op) int { return cmp.Compare(a.End, b.End) })
	m := newMaxIndex(byEnd)
	for _, r2 := range reads {
		if best, ok := m.before(r2.Start); !ok || best.V <= r2.V {
			continue
		}
		// The latest earlier read that was newer: the narrowest window.
		i := sort.Search(len(byEnd), func(i int) bool { return byEnd[i].End >= r2.Start }) - 1
		for ; i >= 0 && byEnd[i].V <= r2.V; i-- {
		}
		r1 := byEnd[i]
		v := violation{Read: r2, Prev: r1, Class: a.res.lay.class(k)}
		v.Why = a.explain(p, k, r1, r2)
		a.c5 = append(a.c5, v)
	}
}

// Windows in which the library does not promise monotonic reads, in the
// order a violation is classified.
const (
	whyFault     = "a fault or its recovery"
	whyDown      = "Client down or degraded (RedisUp false)"
	whyFlush     = "a flush of the in-process tier"
	whyFailed    = "a write of the key failed (Redis state unknown until replay or expiry)"
	whyPending   = "another process's newer write not yet invalidated here"
	whyForeignDL = "a foreign-DEL key (a DEL cannot fence a load under way)"
	whyOwnLoad   = "the newer value came from this process's own load (may not have been cached)"
)

var whyOrder = []string{whyFault, whyDown, whyFlush, whyFailed, whyPending, whyForeignDL, whyOwnLoad}

func (a *analysis) explain(p, k int, r1, r2 Op) string {
	x := a.idx
	from, to := r1.Start, r2.End
	switch {
	case overlaps(x.faults, from, to):
		return whyFault
	case overlaps(x.down[p], from, to):
		return whyDown
	case anyIn(x.flushes[p], from, to):
		return whyFlush
	}
	grace := int64(a.res.o.ttl + time.Second)
	for _, f := range x.failed[k] {
		if f.V > r2.V && f.Start < r2.End && r2.Start < f.End+grace {
			return whyFailed
		}
	}
	for v := r2.V + 1; v <= r1.V && v <= r2.V+10000; v++ {
		w, ok := x.byVersion[k][v]
		if !ok || w.P == p || !w.ok() {
			continue
		}
		if w.End >= r2.Start {
			return whyPending
		}
		inv, okI := lastBefore(x.invals[p][k], r2.Start)
		fl, okF := lastBefore(x.flushes[p], r2.Start)
		if !(okI && inv > w.End) && !(okF && fl > w.End) {
			return whyPending
		}
	}
	if a.res.lay.class(k) == classForeignDel {
		return whyForeignDL
	}
	for _, l := range x.loads[p][k] {
		if l.V == r1.V && l.End <= r1.End {
			return whyOwnLoad
		}
	}
	return ""
}

// inFault reports whether o ran during a fault's window or while its
// process was down: a refresh's own write may then have failed unseen.
func (a *analysis) inFault(o Op) bool {
	if overlaps(a.idx.faults, o.Start, o.End) {
		return true
	}
	return o.P >= 0 && overlaps(a.idx.down[o.P], o.Start, o.End)
}

func (a *analysis) finalState() finalCheck {
	res, x := a.res, a.idx
	var f finalCheck
	f.notUp = res.notUp
	for k, v := range res.redisStop {
		truth := res.truthStop[k]
		switch {
		case v < 0:
			f.redisBad = append(f.redisBad, k)
		case v > truth:
			f.ahead = append(f.ahead, Op{P: foreign, K: k, Kind: "redis", V: v})
		case v == 0 || v == truth:
		case res.lay.class(k) == classForeignDel:
			f.stopStaleFD = append(f.stopStaleFD, k)
		case slices.ContainsFunc(x.failed[k], func(o Op) bool { return o.V > v }):
			f.stopFailed = append(f.stopFailed, k)
		default:
			f.stopStale = append(f.stopStale, k)
		}
	}
	for k, v := range res.redisFinal {
		truth := res.truthFinal[k]
		switch {
		case v < 0:
			f.redisBad = append(f.redisBad, k)
		case v > truth:
			f.ahead = append(f.ahead, Op{P: foreign, K: k, Kind: "redis", V: v})
		case v > 0 && v < truth && res.lay.class(k) == classForeignDel:
			f.redisStaleFD = append(f.redisStaleFD, k)
		case v > 0 && v < truth:
			f.redisStale = append(f.redisStale, k)
		}
	}
	for p := range x.procs {
		for _, o := range x.finals[p] {
			truth := res.truthFinal[o.K]
			fd := res.lay.class(o.K) == classForeignDel
			switch {
			case !o.ok():
				f.failed = append(f.failed, o)
			case o.V > truth:
				f.ahead = append(f.ahead, o)
			case o.Kind == opFinalGet && o.V > 0 && o.V < truth && fd:
				f.getStaleFD = append(f.getStaleFD, o)
			case o.Kind == opFinalGet && o.V > 0 && o.V < truth:
				f.getStale = append(f.getStale, o)
			case o.Kind == opFinalFetch && o.V < truth && fd:
				f.fetchStaleFD = append(f.fetchStaleFD, o)
			case o.Kind == opFinalFetch && o.V < truth:
				f.fetchStale = append(f.fetchStale, o)
			}
		}
	}
	return f
}
