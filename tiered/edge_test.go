package tiered_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/faultproxy"
	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// gatedCodec is JSON whose decoding of one payload waits at a gate: it
// holds a reader between its Redis read and its in-process install.
type gatedCodec struct {
	payload string
	armed   *atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGatedCodec(payload string) gatedCodec {
	g := gatedCodec{payload: payload, armed: new(atomic.Bool), entered: make(chan struct{}), release: make(chan struct{})}
	g.armed.Store(true)
	return g
}

func (g gatedCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (g gatedCodec) Unmarshal(data []byte, v any) error {
	if string(data) == g.payload && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return json.Unmarshal(data, v)
}

// TestRefreshBeatsSlowReader: a read of the old value that installs after
// a refresh in the same process must not bring the old value back.
func TestRefreshBeatsSlowReader(t *testing.T) {
	gate := newGatedCodec(`"v0"`)
	e := newEnv(t, tiered.Options{})
	things, err := tiered.NewCache[string](e.client, "thing", tiered.Codec(gate))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key, _ := things.Key(ctx, "k")
	e.rdb.Set(ctx, key, `"v0"`, time.Minute)
	read := make(chan string)
	go func() { v, _ := things.Get(ctx, "k"); read <- v }()
	<-gate.entered // the reader has v0 from Redis and has not installed it
	v, err := things.Fetch(ctx, "k", func(context.Context, string) (string, error) { return "v1", nil }, tiered.Reload())
	if err != nil || v != "v1" {
		t.Fatalf("refresh = %q, %v", v, err)
	}
	close(gate.release)
	<-read
	for range 50 {
		if got, err := things.Get(ctx, "k"); err != nil || got != "v1" {
			t.Fatalf("after the refresh Get = %q, %v; want v1", got, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFetchManyRefreshInvalidatesPeers(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1", Email: "old"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, peer.client, peer.users, ctx, "1")
	if _, err := e.users.FetchMany(ctx, []string{"1"}, func(context.Context, []string) (map[string]User, error) {
		return map[string]User{"1": {ID: "1", Email: "fresh"}}, nil
	}, tiered.Reload()); err != nil {
		t.Fatal(err)
	}
	awaitEmail(t, peer.users, ctx, "1", "fresh", "a batch refresh")
}

// TestFillDropsExpiredCopies: a peer holding a copy of a key that expired
// in Redis drops it when another process loads the key again.
func TestFillDropsExpiredCopies(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1", Email: "v0"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, peer.client, peer.users, ctx, "1")
	e.rdb.Del(ctx, e.key(t, ctx, "1")) // as an expiry would: no invalidation
	third := newEnv(t, tiered.Options{Keys: e.kb})
	if _, err := third.users.Fetch(ctx, "1", func(context.Context, string) (User, error) {
		return User{ID: "1", Email: "v1"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	awaitEmail(t, peer.users, ctx, "1", "v1", "the key was refilled")
}

// TestLeaseWaitExpires holds a lease that is never filled: the waiter
// loads by itself after LeaseWait, under a load timeout of its own, and
// caches nothing.
func TestLeaseWaitExpires(t *testing.T) {
	e := newEnv(t, tiered.Options{LoadTimeout: time.Second})
	ctx := context.Background()
	key := e.key(t, ctx, "held")
	e.rdb.Set(ctx, "{"+key+"}:lease", "someone-else", time.Minute)
	start := time.Now()
	u, err := e.users.Fetch(ctx, "held", func(ctx context.Context, _ string) (User, error) {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 900*time.Millisecond {
			return User{}, fmt.Errorf("fallback load got a spent context (deadline %v)", dl)
		}
		return User{ID: "held"}, nil
	})
	if err != nil || u.ID != "held" {
		t.Fatalf("Fetch = %+v, %v after %v", u, err, time.Since(start))
	}
	st := cacheStats(e.client, "user")
	if st.WaitExpired != 1 || st.DegradedLoads != 0 || e.client.Stats().RedisErrors != 0 {
		t.Fatalf("stats = %+v / %+v", st, e.client.Stats())
	}
	if n := e.rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("a value loaded without the lease was cached")
	}
}

func TestNilInterfaceValue(t *testing.T) {
	c, _ := l1Only(t)
	anything, err := tiered.NewCache[any](c, "anything")
	if err != nil {
		t.Fatal(err)
	}
	v, err := anything.Fetch(context.Background(), "1", func(context.Context, string) (any, error) { return nil, nil })
	if err != nil || v != nil {
		t.Fatalf("Fetch = %v, %v", v, err)
	}
}

func TestRingRefused(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	if c, err := tiered.New(tiered.Options{Redis: ring}); err == nil {
		c.Close()
		t.Fatal("New accepted a Ring")
	}
}

// TestLargeBatches writes and invalidates batches whose invalidation would
// not fit in one bus message.
func TestLargeBatches(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	long := strings.Repeat("x", 250)
	ids := make([]string, 1000)
	values := map[string]User{}
	for i := range ids {
		ids[i] = fmt.Sprintf("%04d-%s", i, long)
		values[ids[i]] = User{ID: "new"}
	}
	suffix := tiered.Suffix(strings.Repeat("s", 250))
	ver := tiered.Version(strings.Repeat("v", 250))
	// The peer holds stale copies of two of them.
	for _, id := range []string{ids[0], ids[999]} {
		if err := peer.users.Set(ctx, id, User{ID: "old"}, suffix, ver); err != nil {
			t.Fatal(err)
		}
		awaitL1(t, peer.client, peer.users, ctx, id, suffix, ver)
	}
	if err := e.users.Warm(ctx, values, suffix, ver); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ids[0], ids[999]} {
		eventually(t, 3*time.Second, func() error {
			if u, err := peer.users.Get(ctx, id, suffix, ver); err != nil || u.ID != "new" {
				return fmt.Errorf("peer still serves %+v, %v after a large Warm", u, err)
			}
			return nil
		})
	}
	if n := peer.client.Stats().MalformedMessages; n != 0 {
		t.Fatalf("%d messages dropped as malformed", n)
	}
}

// TestFetchManyOverMessageLimit loads more keys than one bus message holds.
func TestFetchManyOverMessageLimit(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	ids := make([]string, 10001)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	got, err := e.users.FetchMany(ctx, ids, func(ctx context.Context, missing []string) (map[string]User, error) {
		out := make(map[string]User, len(missing))
		for _, id := range missing {
			out[id] = User{ID: id}
		}
		return out, nil
	})
	if err != nil || len(got) != len(ids) {
		t.Fatalf("FetchMany = %d values, %v", len(got), err)
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "0"), e.key(t, ctx, "10000")).Val(); n != 2 {
		t.Fatalf("%d of 2 sampled values cached", n)
	}
	if n := e.rdb.Exists(ctx, "{"+e.key(t, ctx, "5000")+"}:lease").Val(); n != 0 {
		t.Fatal("a lease was left behind")
	}
}

// TestCloseWithRedisHung closes a Client whose Redis accepts connections
// and never answers.
func TestCloseWithRedisHung(t *testing.T) {
	srv := redistest.Shared(t)
	kb, _ := keys.New(redistest.Prefix(t))
	p, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetMode(faultproxy.Hang)
	o := srv.Options()
	o.Addr, o.ReadTimeout = p.Addr(), time.Minute
	rdb := redis.NewClient(o)
	defer rdb.Close()
	c, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, StartupWait: 100 * time.Millisecond, HealthCheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hung Redis")
	}
}

func TestCancelledGetIsNotAnOutage(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.users.Get(ctx, "1")
	if !errors.Is(err, context.Canceled) || errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Get with a cancelled context = %v", err)
	}
	if n := e.client.Stats().RedisErrors; n != 0 {
		t.Fatalf("RedisErrors = %d after a caller's cancellation", n)
	}
}
