package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// history builds a result of two workers over ten keys (k0-k3 delete, k4-k7
// set, k8 foreign-setex, k9 foreign-del) whose truth ends at final.
func history(ops []Op, final int64) *result {
	o := options{procs: 2, keys: 10, ttl: 200 * time.Millisecond, l1ttl: 100 * time.Millisecond, settle: time.Second}
	res := &result{o: o, lay: newLayout(o.keys, o.procs), ops: ops,
		truthFinal: make([]int64, o.keys), redisFinal: make([]int64, o.keys),
		truthStop: make([]int64, o.keys), redisStop: make([]int64, o.keys)}
	for k := range res.truthFinal {
		res.truthFinal[k], res.truthStop[k] = final, final
	}
	return res
}

func read(p, k int, kind string, start, end, v int64) Op {
	return Op{P: p, K: k, Kind: kind, Start: start, End: end, V: v}
}

func write(p, k int, kind string, start, end, v int64) Op {
	return Op{P: p, K: k, Kind: kind, Start: start, End: end, V: v}
}

func inval(p, k int, at int64) Op { return Op{P: p, K: k, Kind: opInval, Start: at, End: at} }

func TestOverlappingReadMayReturnEitherVersion(t *testing.T) {
	a := analyze(history([]Op{
		write(0, 0, opDelete, 100, 200, 2),
		read(0, 0, opFetch, 150, 250, 1), // started before the write returned
		read(1, 0, opGet, 199, 210, 1),
		inval(1, 0, 205),
		read(1, 0, opGet, 204, 210, 1), // started before the invalidation
	}, 2))
	if len(a.c1)+len(a.c2) != 0 {
		t.Fatalf("flagged legitimate concurrency: c1 %v c2 %v", a.c1, a.c2)
	}
	// Only the read that began after the write returned is stale across
	// processes (check 3 measures, it does not fail).
	if len(a.c3) != 1 || a.c3[0].Read.Start != 204 {
		t.Fatalf("c3 = %+v", a.c3)
	}
}

func TestReadAfterOwnWrite(t *testing.T) {
	a := analyze(history([]Op{
		write(0, 4, opSet, 100, 200, 2),
		read(0, 4, opFetch, 201, 210, 1), // stale: after this process's Set
		read(0, 4, opGet, 201, 210, 0),   // not found: neither stale nor fresh
		read(0, 4, opGet, 220, 230, 2),
		write(0, 5, opSet, 100, 200, 7),
		Op{P: 0, K: 5, Kind: opSet, Start: 300, End: 400, V: 8, Err: "unavailable"},
		read(0, 5, opGet, 401, 402, 7), // after a failed write: not counted
	}, 2))
	if len(a.c1) != 1 || a.c1[0].Read.Start != 201 || a.c1[0].Write.V != 2 {
		t.Fatalf("c1 = %+v, want the one read at 201", a.c1)
	}
	if len(a.c3) != 0 {
		t.Fatalf("c3 = %+v: own writes are not another process's", a.c3)
	}
}

func TestReadAfterAppliedInvalidation(t *testing.T) {
	a := analyze(history([]Op{
		write(0, 0, opDelete, 100, 200, 2),
		inval(1, 0, 150), // applied before the write returned: says nothing of it
		read(1, 0, opGet, 160, 170, 1),
		read(1, 0, opGet, 250, 260, 1), // after the write, but no invalidation since
		write(0, 1, opDelete, 100, 200, 5),
		inval(1, 1, 300),
		read(1, 1, opFetch, 310, 320, 4), // stale: invalidation applied after the write returned
		write(0, 2, opDelete, 100, 200, 9),
		inval(1, -1, 300), // a flush
		read(1, 2, opFetch, 310, 320, 8),
	}, 9))
	if len(a.c2) != 2 {
		t.Fatalf("c2 = %+v, want 2", a.c2)
	}
	if a.c2[0].Inval != 300 || a.c2[1].Inval != 300 || a.c2[0].Flush == a.c2[1].Flush {
		t.Fatalf("c2 = %+v", a.c2)
	}
	if len(a.c3) != 3 {
		t.Fatalf("c3 = %+v, want the three reads after another process's write", a.c3)
	}
}

func TestCrossProcessStaleness(t *testing.T) {
	a := analyze(history([]Op{
		write(0, 0, opDelete, 100, 200, 2),
		write(0, 0, opDelete, 300, 400, 3),
		read(1, 0, opFetch, 450, 460, 1), // stale since the first write returned
		read(1, 0, opFetch, 450, 460, 2), // stale since the second
		read(1, 0, opFetch, 450, 460, 3),
		write(foreign, 8, opSetex, 100, 200, 2),
		read(0, 8, opGet, 201, 202, 1),
	}, 3))
	if len(a.c3) != 3 {
		t.Fatalf("c3 = %+v, want 3", a.c3)
	}
	want := map[int64]time.Duration{1: 250, 2: 50}
	for _, v := range a.c3[:2] {
		if v.staleness() != want[v.Read.V] {
			t.Errorf("staleness of v%d = %v, want %v", v.Read.V, v.staleness(), want[v.Read.V])
		}
	}
}

func TestMonotonicReads(t *testing.T) {
	a := analyze(history([]Op{
		read(0, 0, opFetch, 10, 20, 2),
		read(0, 0, opFetch, 15, 40, 1), // overlaps: fine
		read(0, 0, opFetch, 30, 40, 1), // after: not monotonic
		// another process's write not yet invalidated here
		write(1, 1, opDelete, 5, 25, 2),
		read(0, 1, opFetch, 26, 27, 2),
		read(0, 1, opGet, 30, 31, 1),
		// the same, but invalidated here in between: unexplained
		write(1, 2, opDelete, 5, 25, 2),
		read(0, 2, opFetch, 26, 27, 2),
		inval(0, 2, 28),
		read(0, 2, opGet, 30, 31, 1),
	}, 2))
	why := map[int]string{}
	for _, v := range a.c5 {
		why[v.Read.K] = v.Why
	}
	if len(a.c5) != 3 || why[1] != whyPending || why[2] != "" {
		t.Fatalf("c5 = %+v", a.c5)
	}
}

func TestFinalState(t *testing.T) {
	res := history([]Op{
		read(0, 0, opFinalGet, 1, 2, 0), // absent: fine
		read(0, 1, opFinalGet, 1, 2, 4),
		read(1, 2, opFinalFetch, 1, 2, 5),
		read(1, 3, opFinalFetch, 1, 2, 4),
		read(1, 9, opFinalFetch, 1, 2, 4), // foreign-DEL key: reported apart
	}, 5)
	res.redisFinal[4] = 4
	res.redisFinal[5] = 5
	res.redisStop[6] = 3 // stale as the writers stopped
	res.redisStop[7] = 5
	a := analyze(res)
	f := a.final
	if len(f.getStale) != 1 || len(f.fetchStale) != 1 || len(f.fetchStaleFD) != 1 || len(f.redisStale) != 1 || len(f.stopStale) != 1 {
		t.Fatalf("final = %+v", f)
	}
	var out bytes.Buffer
	if !report(&out, a) || !strings.Contains(out.String(), "FAIL") {
		t.Fatalf("report passed:\n%s", out.String())
	}
}

func TestCleanHistoryPasses(t *testing.T) {
	a := analyze(history([]Op{
		write(0, 0, opDelete, 100, 200, 2),
		read(1, 0, opFetch, 300, 310, 2),
		read(0, 0, opFinalFetch, 400, 410, 2),
	}, 2))
	var out bytes.Buffer
	if report(&out, a) {
		t.Fatalf("report failed:\n%s", out.String())
	}
}

func TestLayout(t *testing.T) {
	l := newLayout(30, 4)
	if l.NDelete+l.NSet+l.NFSetex+l.NFDelete != 30 || l.NFSetex == 0 || l.NFDelete == 0 {
		t.Fatalf("layout %+v", l)
	}
	for _, k := range l.keysOf(classSet) {
		if o := l.owner(k); o < 0 || o >= 4 {
			t.Fatalf("owner of k%d = %d", k, o)
		}
	}
}
