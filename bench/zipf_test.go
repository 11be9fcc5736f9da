package bench

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gcache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/viccon/sturdyc"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// Zipf workload shape.
const (
	zipfKeys      = 100_000
	zipfS         = 1.1
	zipfInstances = 4
	zipfWritePct  = 5
	zipfWarmOps   = 50_000 // before timing: the tiers reach steady state
	zipfPerP      = 4      // goroutines per P (SetParallelism)
)

// zipfData is the key space: ids and their values, built once.
var zipfData = sync.OnceValues(func() ([]string, []User) {
	ids := ids("z", zipfKeys)
	users := make([]User, len(ids))
	for i, id := range ids {
		users[i] = makeUser(id)
	}
	return ids, users
})

// zipfInstance is one process of the workload.
type zipfInstance struct {
	read  func(ctx context.Context, i int) error
	write func(ctx context.Context, i int) error
}

// zipfCounts are an implementation's counters, summed over instances.
type zipfCounts struct {
	l1, l2, miss                   uint64
	dropped, rejected, invalidated uint64
	refetched, evicted             uint64
}

// zipfImpl is one implementation under the workload.
type zipfImpl struct {
	name  string
	setup func(b *testing.B, ids []string, users []User) ([]zipfInstance, func() zipfCounts)
}

// BenchmarkZipf runs a read/write mix over many keys with Zipf popularity
// across several instances sharing one Redis, from zipfPerP goroutines per
// P, each bound to one instance. Redis starts filled with every key; the
// in-process tiers start empty and are warmed by zipfWarmOps operations
// before timing. Reads are read-through (the loader answers at once);
// writes replace the value. It reports throughput, latency percentiles of
// every operation, the share of reads each tier served, and the CPU time
// per operation of this process (client-us/op), of Redis (redis-us/op) and
// both (cpu-us/op): steadier than throughput on a shared machine. An
// operation that times out is counted ("timeouts") and the run goes on.
//
// go-redis/cache's local caches are not invalidated by other instances'
// writes (it has no bus), and sturdyc here is in-process only: their hit
// ratios are not bought with the consistency ours keeps.
func BenchmarkZipf(b *testing.B) {
	ids, users := zipfData()
	warm := zipfWarmOps
	if v, err := strconv.Atoi(os.Getenv("BENCH_ZIPF_WARM")); err == nil && v >= 0 {
		warm = v
	}
	prefix := redistest.Prefix(b)
	admin := adminClient(b)
	impls := []zipfImpl{
		{"tiered", zipfTiered(prefix)},
		// Under a prefix of its own: the first Clients, still subscribed,
		// must not hear its writes.
		{"tiered-refetch", zipfTiered(prefix+"-refetch", func(o *tiered.Options) { o.RefetchInvalidated = true })},
		{"go-redis-cache", func(b *testing.B, ids []string, users []User) ([]zipfInstance, func() zipfCounts) {
			var grcs []*gcache.Cache
			var insts []zipfInstance
			for i := range zipfInstances {
				// A local cache of as many entries as ours holds in its
				// default 64 MiB: the whole key space.
				grc := gcache.New(&gcache.Options{Redis: redisClient(b), LocalCache: gcache.NewTinyLFU(zipfKeys, benchTTL), StatsEnabled: true})
				if i == 0 {
					prefill(b, peerKey(prefix, ""), "", ids, users, func(u User) ([]byte, error) { return grc.Marshal(u) })
				}
				grcs = append(grcs, grc)
				insts = append(insts, zipfInstance{
					read: func(ctx context.Context, k int) error {
						var u User
						return grc.Once(&gcache.Item{
							Ctx: ctx, Key: peerKey(prefix, ids[k]), Value: &u, TTL: benchTTL,
							Do: func(*gcache.Item) (any, error) { return users[k], nil },
						})
					},
					write: func(ctx context.Context, k int) error {
						return grc.Set(&gcache.Item{Ctx: ctx, Key: peerKey(prefix, ids[k]), Value: users[k], TTL: benchTTL})
					},
				})
			}
			return insts, func() (z zipfCounts) {
				// Redis hits and misses; the rest of the reads were local.
				for _, g := range grcs {
					s := g.Stats()
					z.l2, z.miss = z.l2+s.Hits, z.miss+s.Misses
				}
				return z
			}
		}},
		{"sturdyc", func(b *testing.B, ids []string, users []User) ([]zipfInstance, func() zipfCounts) {
			var loads atomic.Uint64
			var insts []zipfInstance
			for range zipfInstances {
				sc := sturdyc.New[User](zipfKeys, 16, benchTTL, 10)
				insts = append(insts, zipfInstance{
					read: func(ctx context.Context, k int) error {
						_, err := sc.GetOrFetch(ctx, ids[k], func(context.Context) (User, error) {
							loads.Add(1)
							return users[k], nil
						})
						return err
					},
					write: func(ctx context.Context, k int) error { sc.Set(ids[k], users[k]); return nil },
				})
			}
			return insts, func() zipfCounts { return zipfCounts{miss: loads.Load()} }
		}},
	}
	for _, im := range impls {
		// Set up and warm once; the runs of increasing b.N that the
		// testing package makes then all start from a steady state.
		insts, tierStats := im.setup(b, ids, users)
		var reads atomic.Uint64
		runZipf(insts, warm, &reads)
		b.Run("impl="+im.name, func(b *testing.B) {
			before, readsBefore := tierStats(), reads.Load()
			var mu sync.Mutex
			var all hist
			var worker atomic.Uint64
			var to timeouts
			b.ReportAllocs()
			b.SetParallelism(zipfPerP)
			cpu := startCPU(admin)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := worker.Add(1)
				inst := insts[int(w)%len(insts)]
				r := rand.New(rand.NewPCG(w, uint64(time.Now().UnixNano())))
				z := rand.NewZipf(r, zipfS, 1, zipfKeys-1)
				h := new(hist)
				ctx := context.Background()
				for pb.Next() {
					k := int(z.Uint64())
					t := time.Now()
					var err error
					if r.IntN(100) < zipfWritePct {
						err = inst.write(ctx, k)
					} else {
						reads.Add(1)
						err = inst.read(ctx, k)
					}
					h.add(time.Since(t))
					if to.failed(b, err) {
						return
					}
				}
				mu.Lock()
				all.merge(h)
				mu.Unlock()
			})
			b.StopTimer()
			cpu.report(b, b.N)
			to.report(b)
			after := tierStats()
			n := float64(reads.Load() - readsBefore)
			l2, miss := float64(after.l2-before.l2), float64(after.miss-before.miss)
			l1 := float64(after.l1 - before.l1)
			if !strings.HasPrefix(im.name, "tiered") {
				l1 = n - l2 - miss // local hits and coalesced reads
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(us(all.quantile(0.50)), "p50-us")
			b.ReportMetric(us(all.quantile(0.99)), "p99-us")
			if n > 0 {
				b.ReportMetric(100*l1/n, "l1-hit-%")
				b.ReportMetric(100*l2/n, "l2-hit-%")
				b.ReportMetric(100*miss/n, "miss-%")
			}
			if strings.HasPrefix(im.name, "tiered") {
				b.ReportMetric(float64(after.refetched-before.refetched)/float64(b.N), "refetch/op")
				b.ReportMetric(float64(after.dropped-before.dropped)/float64(b.N), "l1-dropped/op")
				b.ReportMetric(float64(after.rejected-before.rejected)/float64(b.N), "l1-rejected/op")
				b.ReportMetric(float64(after.evicted-before.evicted)/float64(b.N), "l1-evicted/op")
				b.ReportMetric(float64(after.invalidated-before.invalidated)/float64(b.N), "inval-recv/op")
			}
		})
	}
}

// runZipf runs ops operations of the workload from zipfPerP goroutines per
// P.
func runZipf(insts []zipfInstance, ops int, reads *atomic.Uint64) {
	workers := zipfPerP * runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			inst := insts[w%len(insts)]
			r := rand.New(rand.NewPCG(uint64(w), 0xa11))
			z := rand.NewZipf(r, zipfS, 1, zipfKeys-1)
			ctx := context.Background()
			for range ops / workers {
				k := int(z.Uint64())
				if r.IntN(100) < zipfWritePct {
					_ = inst.write(ctx, k)
				} else {
					reads.Add(1)
					_ = inst.read(ctx, k)
				}
			}
		})
	}
	wg.Wait()
}

// zipfIndex recovers the index of a zipf id ("z-123").
func zipfIndex(id string) int {
	n, _ := strconv.Atoi(id[2:])
	return n
}

// prefill writes every value to Redis under prefix+id+suffix, pipelined.
func prefill(b *testing.B, prefix, suffix string, ids []string, users []User, enc func(User) ([]byte, error)) {
	b.Helper()
	rdb := redisClient(b)
	ctx := context.Background()
	for start := 0; start < len(ids); start += 1000 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+1000, len(ids)); i++ {
				data, err := enc(users[i])
				if err != nil {
					return err
				}
				p.Set(ctx, prefix+ids[i]+suffix, data, benchTTL)
			}
			return nil
		})
		check(b, err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		for start := 0; start < len(ids); start += 1000 {
			_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := start; i < min(start+1000, len(ids)); i++ {
					p.Unlink(ctx, prefix+ids[i]+suffix)
				}
				return nil
			})
		}
	})
}

// zipfTiered is ours under the workload, its Options changed by mut.
func zipfTiered(prefix string, mut ...func(*tiered.Options)) func(*testing.B, []string, []User) ([]zipfInstance, func() zipfCounts) {
	return func(b *testing.B, ids []string, users []User) ([]zipfInstance, func() zipfCounts) {
		var clients []*tiered.Client
		var insts []zipfInstance
		for i := range zipfInstances {
			c := newTiered(b, redisClient(b), prefix, "zipf-"+strconv.Itoa(i), mut...)
			u := newUsers(b, c)
			if i == 0 {
				prefill(b, prefix+":tenant-global:user:", ":v1", ids, users, func(u User) ([]byte, error) {
					return json.Marshal(u)
				})
			}
			get := u.Wrap(func(ctx context.Context, id string) (User, error) { return users[zipfIndex(id)], nil })
			clients = append(clients, c)
			insts = append(insts, zipfInstance{
				read:  func(ctx context.Context, k int) error { _, err := get(ctx, ids[k]); return err },
				write: func(ctx context.Context, k int) error { return u.Set(ctx, ids[k], users[k]) },
			})
		}
		return insts, func() (z zipfCounts) {
			for _, c := range clients {
				st := c.Stats()
				z.dropped += st.L1Dropped
				z.rejected += st.L1Rejected
				z.evicted += st.L1Evicted
				z.invalidated += st.InvalidationsReceived
				s := cacheStats(c, "user")
				z.l1, z.l2, z.miss = z.l1+s.HitsL1, z.l2+s.HitsL2, z.miss+s.Misses
				z.refetched += s.Refetches
			}
			return z
		}
	}
}
