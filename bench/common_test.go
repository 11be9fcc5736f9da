package bench

import (
	"context"
	"errors"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// User is the value every scenario caches: a struct of the size of a
// typical API resource, about 190 bytes of JSON.
type User struct {
	ID        string    `json:"id" msgpack:"id"`
	Email     string    `json:"email" msgpack:"email"`
	Name      string    `json:"name" msgpack:"name"`
	OrgID     string    `json:"org_id" msgpack:"org_id"`
	Roles     []string  `json:"roles" msgpack:"roles"`
	Active    bool      `json:"active" msgpack:"active"`
	CreatedAt time.Time `json:"created_at" msgpack:"created_at"`
}

var created = time.Date(2024, 5, 17, 9, 30, 0, 0, time.UTC)

func makeUser(id string) User {
	return User{
		ID:        id,
		Email:     id + "@example.com",
		Name:      "Ada Lovelace",
		OrgID:     "org-7f9c2a",
		Roles:     []string{"member", "billing"},
		Active:    true,
		CreatedAt: created,
	}
}

// The key of the L1 and L2 hit scenarios, exactly as the library builds it.
const (
	realPrefix = "fastapi_template"
	realID     = "uuid-456"
	realKey    = "fastapi_template:tenant-global:user:uuid-456:v1"
)

// Long TTLs: no scenario may see an entry expire under it.
const (
	benchTTL   = 10 * time.Minute
	benchL1TTL = 10 * time.Minute
)

// redisClient returns a new go-redis client of the shared benchmark Redis,
// closed when b ends. Every instance of a multi-instance scenario gets its
// own, as separate processes would. It is the only way the scenarios reach
// Redis, ours and the peers alike, so that all have the same options and,
// with BENCH_DELAY set, the same delay line (see redis_test.go).
func redisClient(b *testing.B) *redis.Client {
	b.Helper()
	c := redis.NewClient(clientOptions(b))
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// peerKey is where peers keep id: outside the prefix that ours watches
// (CLIENT TRACKING ... BCAST PREFIX), so that a peer's writes do not send
// invalidations to our instances alive in the same scenario.
func peerKey(prefix, id string) string { return "peer-" + prefix + ":" + id }

// newTiered returns a Client on its own Redis connection (nil rdb: L1 only)
// with metrics on, closed when b ends.
func newTiered(b *testing.B, rdb *redis.Client, prefix, instance string, mut ...func(*tiered.Options)) *tiered.Client {
	b.Helper()
	kb, err := keys.New(prefix)
	if err != nil {
		b.Fatal(err)
	}
	o := tiered.Options{
		Keys:        kb,
		Registerer:  prometheus.NewRegistry(),
		InstanceID:  instance,
		TTL:         benchTTL,
		L1TTL:       benchL1TTL,
		StartupWait: 5 * time.Second,
	}
	if rdb != nil {
		o.Redis = rdb
	}
	for _, f := range mut {
		f(&o)
	}
	c, err := tiered.New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if rdb != nil && !c.Stats().RedisUp {
		b.Fatal("the tiered client's subscription did not come up")
	}
	return c
}

func newUsers(b *testing.B, c *tiered.Client, opts ...tiered.Option) *tiered.Cache[User] {
	b.Helper()
	u, err := tiered.NewCache[User](c, "user", opts...)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// cacheStats returns the counters of the client's cache of resource.
func cacheStats(c *tiered.Client, resource string) tiered.CacheStats {
	for _, s := range c.Stats().Caches {
		if s.Resource == resource {
			return s
		}
	}
	return tiered.CacheStats{}
}

// warmL1 reads id until a read is served by the in-process tier (ristretto
// applies new entries asynchronously), or fails b.
func warmL1(b *testing.B, c *tiered.Client, users *tiered.Cache[User], id string) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		before := cacheStats(c, "user").HitsL1
		if _, err := users.Get(ctx, id); err != nil && !errors.Is(err, tiered.ErrNotFound) {
			b.Fatal(err)
		}
		if cacheStats(c, "user").HitsL1 > before {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("%s never reached the in-process tier", id)
}

// waitFor polls cond every 50µs until it holds, or fails b after timeout.
func waitFor(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// ids returns n distinct ids.
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strconv.Itoa(i)
	}
	return out
}

// seq hands out distinct ids to parallel goroutines.
type seq struct{ n atomic.Int64 }

func (s *seq) next(prefix string) string { return prefix + strconv.FormatInt(s.n.Add(1), 36) }

// percentile returns the q-quantile (0 < q <= 1) of samples, which it sorts:
// the smallest sample with at least q of the samples at or below it.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	i := int(math.Ceil(q*float64(len(samples)))) - 1
	return samples[max(0, min(i, len(samples)-1))]
}

// hist is a latency histogram with buckets 1/16 of a power of two wide
// (about 6% resolution), cheap enough to record every operation of a
// throughput run without allocating.
type hist struct {
	counts [1024]uint64
	n      uint64
}

func histIndex(ns uint64) int {
	if ns < 16 {
		return int(ns)
	}
	shift := bits.Len64(ns) - 5
	return shift*16 + int(ns>>shift)
}

func histValue(i int) float64 {
	if i < 16 {
		return float64(i)
	}
	shift := i/16 - 1
	mant := uint64(i - shift*16)
	lo := mant << shift
	return float64(lo) + float64(uint64(1)<<shift)/2
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= want && c > 0 {
			return time.Duration(histValue(i))
		}
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// check fails b on an unexpected error.
func check(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
