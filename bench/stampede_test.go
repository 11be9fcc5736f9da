package bench

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gcache "github.com/go-redis/cache/v9"
	"github.com/viccon/sturdyc"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// Stampede shape: instances (each its own redis.Client and cache, as
// separate processes would have) times goroutines per instance, all asking
// for one cold key whose loader takes stampedeLoad.
const (
	stampedeInstances  = 4
	stampedeGoroutines = 250
	stampedeLoad       = 50 * time.Millisecond
)

// stampedeFetcher fetches key on one instance with load as the loader.
type stampedeFetcher func(ctx context.Context, key string, load func(context.Context) (User, error)) error

// BenchmarkStampede sends instances x goroutines concurrent reads of one
// cold key (a fresh key per iteration) and reports how many times the
// loader ran across all instances (loads/op) and the callers' latency
// percentiles. go-redis/cache guards each process with singleflight only;
// sturdyc is in-process only, one per instance, as the issue asks.
func BenchmarkStampede(b *testing.B) {
	instances, goroutines := stampedeInstances, stampedeGoroutines
	if v, err := strconv.Atoi(os.Getenv("BENCH_STAMPEDE_GOROUTINES")); err == nil && v > 0 {
		goroutines = v
	}
	prefix := redistest.Prefix(b)

	setups := []struct {
		name  string
		setup func(b *testing.B) []stampedeFetcher
	}{
		{"tiered", func(b *testing.B) []stampedeFetcher {
			var fs []stampedeFetcher
			for i := range instances {
				c := newTiered(b, redisClient(b), prefix, "stampede-"+strconv.Itoa(i))
				users := newUsers(b, c, tiered.TTL(time.Minute))
				fs = append(fs, func(ctx context.Context, key string, load func(context.Context) (User, error)) error {
					_, err := users.Fetch(ctx, key, func(ctx context.Context, _ string) (User, error) { return load(ctx) })
					return err
				})
			}
			return fs
		}},
		{"go-redis-cache", func(b *testing.B) []stampedeFetcher {
			var fs []stampedeFetcher
			for range instances {
				grc := gcache.New(&gcache.Options{Redis: redisClient(b), LocalCache: gcache.NewTinyLFU(10000, time.Minute)})
				fs = append(fs, func(ctx context.Context, key string, load func(context.Context) (User, error)) error {
					var u User
					return grc.Once(&gcache.Item{
						Ctx: ctx, Key: peerKey(prefix, key), Value: &u, TTL: time.Minute,
						Do: func(it *gcache.Item) (any, error) { return load(it.Ctx) },
					})
				})
			}
			return fs
		}},
		{"sturdyc", func(b *testing.B) []stampedeFetcher {
			var fs []stampedeFetcher
			for range instances {
				sc := sturdyc.New[User](10000, 10, time.Minute, 10)
				fs = append(fs, func(ctx context.Context, key string, load func(context.Context) (User, error)) error {
					_, err := sc.GetOrFetch(ctx, key, load)
					return err
				})
			}
			return fs
		}},
	}

	for _, s := range setups {
		b.Run("impl="+s.name, func(b *testing.B) {
			fetchers := s.setup(b)
			var loads atomic.Int64
			load := func(ctx context.Context) (User, error) {
				loads.Add(1)
				select {
				case <-time.After(stampedeLoad):
				case <-ctx.Done():
					return User{}, ctx.Err()
				}
				return makeUser("stampede"), nil
			}
			ctx := context.Background()
			var lat []time.Duration
			var to timeouts
			round := 0
			for b.Loop() {
				round++
				key := "s" + strconv.Itoa(round) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
				got := make([]time.Duration, instances*goroutines)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i, f := range fetchers {
					for g := range goroutines {
						wg.Go(func() {
							<-start
							t := time.Now()
							to.failed(b, f(ctx, key, load))
							got[i*goroutines+g] = time.Since(t)
						})
					}
				}
				close(start)
				wg.Wait()
				lat = append(lat, got...)
			}
			to.report(b)
			b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/op")
			b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
			b.ReportMetric(ms(percentile(lat, 1)), "max-ms")
		})
	}
}
