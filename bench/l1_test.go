package bench

import (
	"github.com/tieredcache/tieredcache/tiered"

	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gcache "github.com/go-redis/cache/v9"
	"github.com/viccon/sturdyc"
)

// BenchmarkL1Hit reads one key held in the in-process tier, serially and
// from every P at once. The floor is a raw ristretto Get of the same key
// (a string) and value (a struct); the library reads with metrics on.
func BenchmarkL1Hit(b *testing.B) {
	ctx := context.Background()
	user := makeUser(realID)

	// Ours, on a Redis-backed client as in production: the hit path does
	// not touch Redis either way.
	rdb := redisClient(b)
	client := newTiered(b, rdb, realPrefix, "l1-a")
	users := newUsers(b, client)
	received := client.Stats().InvalidationsReceived
	check(b, users.Set(ctx, realID, user))
	// Redis reports the write to the writer too, which then drops its
	// copy: warm the tier only once that report is in.
	tracking := client.Stats().InvalidationMode == "tracking"
	for deadline := time.Now().Add(10 * time.Second); tracking && client.Stats().InvalidationsReceived == received; {
		if time.Now().After(deadline) {
			b.Fatal("the Set's own invalidation never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	warmL1(b, client, users, realID)
	b.Cleanup(func() { _ = users.Delete(context.Background(), realID) })
	if n, err := rdb.Exists(ctx, realKey).Result(); err != nil || n != 1 {
		b.Fatalf("Set did not write %q (%d, %v)", realKey, n, err)
	}
	wrapped := users.Wrap(func(ctx context.Context, id string) (User, error) { return makeUser(id), nil })

	// The floor.
	rc, err := ristretto.NewCache(&ristretto.Config[string, User]{
		NumCounters: 1 << 20, MaxCost: 64 << 20, BufferItems: 64,
	})
	check(b, err)
	b.Cleanup(rc.Close)
	rc.Set(realKey, user, 200)
	rc.Wait()
	if _, ok := rc.Get(realKey); !ok {
		b.Fatal("ristretto lost the key")
	}

	// The same with a TTL, as ours stores every entry: ristretto then
	// reads the clock on every Get.
	rcTTL, err := ristretto.NewCache(&ristretto.Config[string, User]{
		NumCounters: 1 << 20, MaxCost: 64 << 20, BufferItems: 64,
	})
	check(b, err)
	b.Cleanup(rcTTL.Close)
	rcTTL.SetWithTTL(realKey, user, 200, time.Hour)
	rcTTL.Wait()

	// go-redis/cache with its TinyLFU local cache (values kept encoded).
	grc := gcache.New(&gcache.Options{Redis: rdb, LocalCache: gcache.NewTinyLFU(1000, time.Hour)})
	check(b, grc.Set(&gcache.Item{Ctx: ctx, Key: realKey + ":grc", Value: user, TTL: time.Hour}))
	b.Cleanup(func() { _ = grc.Delete(context.Background(), realKey+":grc") })

	// sturdyc, in-process.
	sc := sturdyc.New[User](1000, 10, time.Hour, 10)
	sc.Set(realKey, user)

	impls := []struct {
		name string
		get  func() bool
	}{
		{"ristretto", func() bool { _, ok := rc.Get(realKey); return ok }},
		{"tiered", func() bool { _, err := users.Get(ctx, realID); return err == nil }},
		{"ristretto-ttl", func() bool { _, ok := rcTTL.Get(realKey); return ok }},
		{"tiered-wrap", func() bool { _, err := wrapped(ctx, realID); return err == nil }},
		{"go-redis-cache", func() bool {
			var u User
			return grc.Get(ctx, realKey+":grc", &u) == nil
		}},
		{"sturdyc", func() bool { _, ok := sc.Get(realKey); return ok }},
	}
	before, flushesBefore := cacheStats(client, "user"), flushes(client)
	for _, mode := range []string{"serial", "parallel"} {
		for _, im := range impls {
			b.Run("mode="+mode+"/impl="+im.name, func(b *testing.B) {
				b.ReportAllocs()
				if mode == "serial" {
					for b.Loop() {
						if !im.get() {
							b.Fatal("miss")
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if !im.get() {
							b.Error("miss")
							return
						}
					}
				})
			})
		}
	}
	// The ratio that the target is about, measured paired: blocks of
	// reads of the floor and of ours alternate, so that a change in the
	// machine's load between two sub-benchmarks cannot skew it.
	for _, mode := range []string{"serial", "parallel"} {
		b.Run("mode="+mode+"/impl=paired", func(b *testing.B) {
			b.ReportAllocs()
			pairedBlocks(b, mode == "parallel", 1000, impls[0].get, impls[1].get)
		})
	}
	// Every read above must have been an L1 hit, unless the Client
	// flushed its tier: on a starved machine its subscription can miss two
	// pings and count as lost, and a flush sends the next read to Redis.
	if s := cacheStats(client, "user"); (s.HitsL2 != before.HitsL2 || s.Misses != before.Misses) && flushes(client) == flushesBefore {
		b.Fatalf("tiered reads left the in-process tier with no flush: before %+v, after %+v", before, s)
	}
}

// flushes counts the in-process flushes of c for a lost or resumed
// subscription.
func flushes(c *tiered.Client) uint64 {
	st := c.Stats()
	return st.FlushesDown + st.FlushesGap + st.FlushesAll
}

// pairedBlocks runs blocks of floor and ours calls alternately (which comes
// first alternates too), b.N calls of each in all, from every P when
// parallel, and reports ours/floor of their summed times as "ratio", and
// each one's time per call. ns/op is the time of one call of each.
func pairedBlocks(b *testing.B, parallel bool, block int, floor, ours func() bool) {
	var floorNs, oursNs atomic.Int64
	run := func(n int, first bool) bool {
		timed := func(f func() bool, into *atomic.Int64) bool {
			t := time.Now()
			for range n {
				if !f() {
					return false
				}
			}
			into.Add(int64(time.Since(t)))
			return true
		}
		if first {
			return timed(floor, &floorNs) && timed(ours, &oursNs)
		}
		return timed(ours, &oursNs) && timed(floor, &floorNs)
	}
	if !parallel {
		first := true
		for done := 0; done < b.N; done += block {
			if !run(min(block, b.N-done), first) {
				b.Fatal("miss")
			}
			first = !first
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			first, n := true, 0
			for pb.Next() {
				if n++; n < block {
					continue
				}
				if !run(n, first) {
					b.Error("miss")
					return
				}
				first, n = !first, 0
			}
			if n > 0 && !run(n, first) {
				b.Error("miss")
			}
		})
	}
	f, o := float64(floorNs.Load()), float64(oursNs.Load())
	b.ReportMetric(o/f, "ratio")
	b.ReportMetric(f/float64(b.N), "floor-ns")
	b.ReportMetric(o/float64(b.N), "ours-ns")
}
