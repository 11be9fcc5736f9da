package bench

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gcache "github.com/go-redis/cache/v9"
	"github.com/viccon/sturdyc"

	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/tiered"
)

const (
	memEntries = 100_000   // entries of the per-entry scenario
	memBudget  = 64 << 20  // the in-process budget of the budget scenario
	memLarge   = 1_000_000 // entries the budget1M scenario's budget holds
	memFill    = 2         // the budget scenarios insert this many budgets' worth
	warmBatch  = 1000
)

// liveHeap returns the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func memKey(id string) string { return realPrefix + ":tenant-global:user:" + id + ":v1" }

// memCache is one in-process cache under the memory scenarios. fill stores
// fresh values for ids (made inside, so that what a cache keeps of them is
// measured); held counts the ids still present.
type memCache struct {
	fill  func(ids []string)
	held  func(ids []string) int
	cost  func() int64 // bytes the cache accounts for; 0 if it does not
	close func()
}

func newMemCache(b *testing.B, impl string, budget int64) memCache {
	ctx := context.Background()
	switch impl {
	case "tiered":
		c, err := tiered.New(tiered.Options{L1MaxBytes: budget, TTL: benchTTL})
		check(b, err)
		users, err := tiered.NewCache[User](c, "user")
		check(b, err)
		return memCache{
			// One Set per entry: in L1-only mode each waits until ristretto
			// applied it. (Warm would be faster but loses entries: see
			// BENCHMARKS.md.)
			fill: func(ids []string) {
				for _, id := range ids {
					check(b, users.Set(ctx, id, makeUser(id)))
				}
			},
			held: func(ids []string) int {
				n := 0
				for _, id := range ids {
					if _, err := users.Get(ctx, id); err == nil {
						n++
					}
				}
				return n
			},
			cost:  func() int64 { return c.Stats().L1Bytes },
			close: func() { _ = c.Close() },
		}
	case "ristretto":
		// Cost: the value's JSON size plus the key, as a user of raw
		// ristretto would pass; ristretto adds its own internal cost.
		rc, err := ristretto.NewCache(&ristretto.Config[string, User]{
			NumCounters: max(budget/64, 1024), MaxCost: budget, BufferItems: 64,
		})
		check(b, err)
		return memCache{
			fill: func(ids []string) {
				for i, id := range ids {
					u := makeUser(id)
					data, _ := json.Marshal(u)
					key := memKey(id)
					rc.Set(key, u, int64(len(data)+len(key)))
					if i%warmBatch == warmBatch-1 {
						rc.Wait()
					}
				}
				rc.Wait()
			},
			held: func(ids []string) int {
				n := 0
				for _, id := range ids {
					if _, ok := rc.Get(memKey(id)); ok {
						n++
					}
				}
				return n
			},
			cost:  func() int64 { return rc.MaxCost() - rc.RemainingCost() },
			close: rc.Close,
		}
	case "go-redis-cache":
		local := gcache.NewTinyLFU(2*memEntries, benchTTL)
		grc := gcache.New(&gcache.Options{LocalCache: local})
		return memCache{
			fill: func(ids []string) {
				for _, id := range ids {
					check(b, grc.Set(&gcache.Item{Key: memKey(id), Value: makeUser(id)}))
				}
			},
			held: func(ids []string) int {
				n := 0
				for _, id := range ids {
					if _, ok := local.Get(memKey(id)); ok {
						n++
					}
				}
				return n
			},
			cost:  func() int64 { return 0 },
			close: func() {},
		}
	case "sturdyc":
		sc := sturdyc.New[User](2*memEntries, 16, benchTTL, 10)
		return memCache{
			fill: func(ids []string) {
				for _, id := range ids {
					sc.Set(memKey(id), makeUser(id))
				}
			},
			held: func(ids []string) int {
				n := 0
				for _, id := range ids {
					if _, ok := sc.Get(memKey(id)); ok {
						n++
					}
				}
				return n
			},
			cost:  func() int64 { return 0 },
			close: func() {},
		}
	}
	b.Fatalf("unknown impl %s", impl)
	return memCache{}
}

// BenchmarkMemory measures the in-process tier's memory.
//
// scenario=entries: the live heap an entry costs (heap growth after
// filling memEntries entries into an empty cache, both after a full GC,
// divided by the entries held), beside the peers holding the same values.
// For ours it also reports the bytes the cache accounts per entry against
// its budget, and the ratio of the two (1 = the accounting is exact).
//
// scenario=budget: a cache with a 64 MiB budget is sent memFill budgets'
// worth of entries (by ours's accounting); the process's live heap growth
// from before the cache was made is reported against the budget. Raw
// ristretto is given the same budget, with the JSON size plus key as cost.
// The peers without a byte budget (go-redis/cache's TinyLFU, sturdyc) have
// no place in it.
//
// scenario=budget1M: the same with a budget that holds memLarge entries
// (473 MiB; 2.3 million inserted), to see whether the per-entry estimates
// and the reserves hold at that size too. A run of it takes one to two
// minutes on 2 cores.
func BenchmarkMemory(b *testing.B) {
	entryIDs := ids("m", memEntries)
	for _, impl := range []string{"tiered", "ristretto", "go-redis-cache", "sturdyc"} {
		b.Run("scenario=entries/impl="+impl, func(b *testing.B) {
			var perEntry, accounted, held float64
			for b.Loop() {
				m := newMemCache(b, impl, 1<<30)
				before := liveHeap()
				m.fill(entryIDs)
				after := liveHeap()
				n := m.held(entryIDs)
				if n == 0 {
					b.Fatal("no entry held")
				}
				perEntry += float64(after-before) / float64(n)
				accounted += float64(m.cost()) / float64(n)
				held += float64(n)
				m.close()
			}
			b.ReportMetric(perEntry/float64(b.N), "heap-B/entry")
			b.ReportMetric(held/float64(b.N), "held")
			if accounted > 0 {
				b.ReportMetric(accounted/float64(b.N), "accounted-B/entry")
				b.ReportMetric(perEntry/accounted, "heap/accounted")
			}
		})
	}

	perEntry := accountedPerEntry(b)
	budgets := []struct {
		name   string
		budget int64
	}{
		{"budget", memBudget},
		{"budget1M", int64(float64(memLarge*perEntry) / entryShare(b))},
	}
	for _, s := range budgets {
		for _, impl := range []string{"tiered", "ristretto"} {
			b.Run("scenario="+s.name+"/impl="+impl, func(b *testing.B) {
				// memFill budgets' worth by our accounting; made here so
				// that a run of other scenarios does not pay for them.
				budgetIDs := ids("b", int(memFill*s.budget/perEntry))
				benchBudget(b, impl, s.name, s.budget, budgetIDs)
			})
		}
	}
}

// benchBudget sends impl's cache, given budget bytes, fresh values for
// budgetIDs, and reports the live heap growth from before the cache was
// made against the budget. name names the heap profile.
func benchBudget(b *testing.B, impl, name string, budget int64, budgetIDs []string) {
	var heap, cost, held float64
	for b.Loop() {
		before := liveHeap()
		m := newMemCache(b, impl, budget)
		m.fill(budgetIDs)
		time.Sleep(10 * time.Millisecond) // let evictions settle
		after := liveHeap()
		writeHeapProfile(b, name+"-"+impl)
		heap += float64(after) - float64(before)
		cost += float64(m.cost())
		held += float64(m.held(budgetIDs))
		m.close()
	}
	n := float64(b.N)
	b.ReportMetric(heap/n/(1<<20), "heap-MiB")
	b.ReportMetric(float64(budget)/(1<<20), "budget-MiB")
	b.ReportMetric(heap/n/float64(budget), "heap/budget")
	b.ReportMetric(cost/n/(1<<20), "accounted-MiB")
	b.ReportMetric(held/n, "held")
	b.ReportMetric(float64(len(budgetIDs)), "inserted")
}

// accountedPerEntry returns what the in-process tier accounts to one
// user-like entry: its JSON size, its key and entryOverhead.
func accountedPerEntry(b *testing.B) int64 {
	one := makeUser("b-100000")
	data, err := json.Marshal(one)
	check(b, err)
	return int64(len(data)) + int64(len(memKey(one.ID))) + entryOverhead(b)
}

// writeHeapProfile writes the live heap to $BENCH_HEAPPROFILE.name.pprof
// when that variable is set, to see what fills the budget:
//
//	BENCH_HEAPPROFILE=/tmp/heap go test -run '^$' -bench 'Memory/scenario=budget' -benchtime 1x
//	go tool pprof -sample_index=inuse_space -top /tmp/heap.budget-tiered.pprof
func writeHeapProfile(b *testing.B, name string) {
	base := os.Getenv("BENCH_HEAPPROFILE")
	if base == "" {
		return
	}
	f, err := os.Create(base + "." + name + ".pprof")
	check(b, err)
	defer f.Close()
	check(b, pprof.WriteHeapProfile(f))
}

// entryShare measures the share of its budget the in-process tier gives
// to entries; the rest pays for ristretto's own structures and slack. It
// sends a small cache twice its budget's worth of entries, so that it is
// full, and reads what it accounts.
func entryShare(b *testing.B) float64 {
	const budget, size = 4 << 20, 1000
	c, err := local.New[[]byte](local.Config{MaxBytes: budget})
	check(b, err)
	defer c.Close()
	for i := range 2 * budget / size {
		key := strconv.Itoa(i)
		h := c.HashString(key)
		c.Install(h, key, nil, size, 0, c.Stamp(h))
		if i%warmBatch == warmBatch-1 {
			c.Wait()
		}
	}
	c.Wait()
	return float64(c.Cost()) / budget
}

// entryOverhead measures what the in-process tier accounts to one entry
// beyond its key and value.
func entryOverhead(b *testing.B) int64 {
	c, err := local.New[[]byte](local.Config{MaxBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	h := c.HashString("k")
	c.Install(h, "k", nil, 0, 0, c.Stamp(h))
	c.Wait()
	return c.Cost() - int64(len("k"))
}
