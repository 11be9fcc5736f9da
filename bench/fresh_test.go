package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viccon/sturdyc"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// Hot key shape: refreshInstances instances (each its own redis.Client and
// Client, as separate processes would have) times refreshGoroutines
// readers of one key with a TTL of refreshTTL (no jitter, so that every
// window is exactly one TTL), whose loader takes refreshLoad, read for
// refreshWindows TTLs. Each reader pauses refreshPace between reads: a
// steady 20,000 reads a second per instance.
const (
	refreshInstances  = 4
	refreshGoroutines = 100
	refreshTTL        = time.Second
	refreshLoad       = 20 * time.Millisecond
	refreshWindows    = 10
	refreshPace       = 5 * time.Millisecond
)

// hotFetcher reads the hot key on one instance.
type hotFetcher func(ctx context.Context, key string, load func(context.Context) (User, error)) error

// BenchmarkEarlyRefresh reads one hot key from every instance for
// refreshWindows TTLs and reports how often the loader ran across the
// fleet per TTL window (loads/window), how many reads waited for a load
// (took longer than half the loader's duration: waited/window), and the
// readers' latency. Ours with plain expiry, with EarlyRefresh(1), and with
// EarlyRefresh(1) and ServeStale(1 s); sturdyc (in-process only, one per
// instance) with early refreshes in the last fifth of the TTL.
func BenchmarkEarlyRefresh(b *testing.B) {
	windows := refreshWindows
	if v, err := strconv.Atoi(os.Getenv("BENCH_REFRESH_WINDOWS")); err == nil && v > 0 {
		windows = v
	}
	prefix := redistest.Prefix(b)
	noJitter := func(o *tiered.Options) { o.TTLJitter = -1 }

	tieredSetup := func(name string, opts ...tiered.Option) func(b *testing.B) ([]hotFetcher, func() (fg, bg uint64)) {
		return func(b *testing.B) ([]hotFetcher, func() (uint64, uint64)) {
			var fs []hotFetcher
			var clients []*tiered.Client
			for i := range refreshInstances {
				c := newTiered(b, redisClient(b), prefix+"-"+name, "refresh-"+strconv.Itoa(i), noJitter)
				clients = append(clients, c)
				users := newUsers(b, c, append([]tiered.Option{tiered.TTL(refreshTTL)}, opts...)...)
				fs = append(fs, func(ctx context.Context, key string, load func(context.Context) (User, error)) error {
					_, err := users.Fetch(ctx, key, func(ctx context.Context, _ string) (User, error) { return load(ctx) })
					return err
				})
			}
			counts := func() (fg, bg uint64) {
				for _, c := range clients {
					s := cacheStats(c, "user")
					fg += s.Loads - s.Refreshes
					bg += s.Refreshes
				}
				return fg, bg
			}
			return fs, counts
		}
	}
	setups := []struct {
		name  string
		setup func(b *testing.B) ([]hotFetcher, func() (fg, bg uint64))
	}{
		{"tiered-expiry", tieredSetup("expiry")},
		{"tiered-early", tieredSetup("early", tiered.EarlyRefresh(1))},
		{"tiered-early-stale", tieredSetup("stale", tiered.EarlyRefresh(1), tiered.ServeStale(time.Second))},
		{"sturdyc-early", func(b *testing.B) ([]hotFetcher, func() (uint64, uint64)) {
			var fs []hotFetcher
			for range refreshInstances {
				sc := sturdyc.New[User](10000, 10, refreshTTL, 10,
					// The retry delay is longer than a load, so that one refresh runs at a time.
					sturdyc.WithEarlyRefreshes(refreshTTL*8/10, refreshTTL*9/10, refreshTTL, 100*time.Millisecond))
				fs = append(fs, func(ctx context.Context, key string, load func(context.Context) (User, error)) error {
					_, err := sc.GetOrFetch(ctx, key, load)
					return err
				})
			}
			return fs, nil
		}},
	}

	for _, s := range setups {
		b.Run("impl="+s.name, func(b *testing.B) {
			fetchers, counts := s.setup(b)
			var loads atomic.Int64
			load := func(ctx context.Context) (User, error) {
				loads.Add(1)
				time.Sleep(refreshLoad) // the database
				return makeUser("hot"), nil
			}
			ctx := context.Background()
			var all hist
			var waited, reads int64
			var to timeouts
			var loads0 int64
			var sync0, bg0 uint64
			round := 0
			for b.Loop() {
				round++
				key := "hot" + strconv.Itoa(round) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
				// The first read of each instance fills the key: not counted.
				for _, f := range fetchers {
					to.failed(b, f(ctx, key, load))
				}
				loads0 = loads.Load()
				if counts != nil {
					sync0, bg0 = counts()
				}
				stop := time.Now().Add(time.Duration(windows) * refreshTTL)
				var mu sync.Mutex
				var wg sync.WaitGroup
				for _, f := range fetchers {
					for range refreshGoroutines {
						wg.Go(func() {
							var h hist
							var w int64
							// Spread the readers over the pace.
							time.Sleep(rand.N(refreshPace))
							for time.Now().Before(stop) {
								t := time.Now()
								err := f(ctx, key, load)
								d := time.Since(t)
								if to.failed(b, err) {
									return
								}
								h.add(d)
								if d > refreshLoad/2 {
									w++
								}
								time.Sleep(refreshPace)
							}
							mu.Lock()
							all.merge(&h)
							waited += w
							mu.Unlock()
						})
					}
				}
				wg.Wait()
				reads += int64(all.n)
			}
			to.report(b)
			n := float64(windows * round)
			b.ReportMetric(float64(loads.Load()-loads0)/n, "loads/window")
			b.ReportMetric(float64(waited)/n, "waited/window")
			if counts != nil {
				sync1, bg1 := counts()
				b.ReportMetric(float64(sync1-sync0)/n, "sync-loads/window")
				b.ReportMetric(float64(bg1-bg0)/n, "bg-loads/window")
			}
			b.ReportMetric(float64(reads)/n, "reads/window")
			b.ReportMetric(us(all.quantile(0.50)), "p50-us")
			b.ReportMetric(us(all.quantile(0.99)), "p99-us")
			b.ReportMetric(us(all.quantile(0.999)), "p999-us")
			b.ReportMetric(ms(all.quantile(1)), "max-ms")
		})
	}
}

// Negative caching shape: negIDs ids that do not exist, each asked
// negRequests times, in random order, by negWorkers goroutines per
// instance over refreshInstances instances; the loader takes negLoad to
// find nothing.
const (
	negIDs      = 100
	negRequests = 100
	negWorkers  = 25
	negLoad     = 2 * time.Millisecond
)

// BenchmarkNegative sends negIDs x negRequests requests for ids that do
// not exist, concurrently from every instance, and reports the loader
// calls per id, with NegativeTTL(1 min) and without (a fresh set of ids
// per iteration).
func BenchmarkNegative(b *testing.B) {
	prefix := redistest.Prefix(b)
	for _, s := range []struct {
		name string
		opts []tiered.Option
	}{
		{"tiered-negative-ttl", []tiered.Option{tiered.NegativeTTL(time.Minute)}},
		{"tiered-none", nil},
	} {
		b.Run("impl="+s.name, func(b *testing.B) {
			var caches []*tiered.Cache[User]
			for i := range refreshInstances {
				c := newTiered(b, redisClient(b), prefix+"-"+s.name, "negative-"+strconv.Itoa(i))
				caches = append(caches, newUsers(b, c, s.opts...))
			}
			var loads atomic.Int64
			load := func(context.Context, string) (User, error) {
				loads.Add(1)
				time.Sleep(negLoad)
				return User{}, tiered.ErrNotFound
			}
			ctx := context.Background()
			var to timeouts
			var wrong atomic.Int64
			var maxPerID int64
			round := 0
			for b.Loop() {
				round++
				base := "missing" + strconv.Itoa(round) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
				reqs := make([]int, 0, negIDs*negRequests)
				for id := range negIDs {
					for range negRequests {
						reqs = append(reqs, id)
					}
				}
				rand.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
				perID := make([]atomic.Int64, negIDs)
				var next atomic.Int64
				var wg sync.WaitGroup
				for _, users := range caches {
					for range negWorkers {
						wg.Go(func() {
							for {
								i := next.Add(1) - 1
								if i >= int64(len(reqs)) {
									return
								}
								id := reqs[i]
								_, err := users.Fetch(ctx, base+strconv.Itoa(id), func(ctx context.Context, key string) (User, error) {
									perID[id].Add(1)
									return load(ctx, key)
								})
								switch {
								case errors.Is(err, tiered.ErrNotFound):
								case err == nil:
									wrong.Add(1)
								default:
									if to.failed(b, err) {
										return
									}
								}
							}
						})
					}
				}
				wg.Wait()
				for i := range perID {
					maxPerID = max(maxPerID, perID[i].Load())
				}
			}
			to.report(b)
			if wrong.Load() > 0 {
				b.Errorf("%d fetches of ids that do not exist returned a value", wrong.Load())
			}
			b.ReportMetric(float64(loads.Load())/float64(round*negIDs), "loads/id")
			b.ReportMetric(float64(maxPerID), "max-loads/id")
			b.ReportMetric(float64(loads.Load())/float64(round*negIDs*negRequests), "loads/request")
		})
	}
}
