package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/internal/faultproxy"
	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// viaProxy returns a Client whose Redis traffic, commands and
// subscription alike, goes through a fault proxy in front of srv.
func viaProxy(t *testing.T, srv *redistest.Server, kb *keys.Builder, opts tiered.Options) (*tiered.Client, *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ro := srv.Options()
	ro.Addr = p.Addr()
	// Far longer than OpTimeout: a call that waited on the socket instead
	// of the operation timeout would show.
	ro.ReadTimeout, ro.WriteTimeout = 5*time.Second, 5*time.Second
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	opts.Redis, opts.Keys = rdb, kb
	c, err := tiered.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, p
}

// TestHungRedis puts a proxy that accepts and never answers between the
// Client and Redis. No call may wait longer than the operation timeout
// plus the loader; once the breaker opens, calls skip Redis altogether.
func TestHungRedis(t *testing.T) {
	srv := redistest.Shared(t)
	kb, _ := keys.New(redistest.Prefix(t))
	const opTimeout, loaderTime = 100 * time.Millisecond, 10 * time.Millisecond
	c, proxy := viaProxy(t, srv, kb, tiered.Options{
		OpTimeout: opTimeout, HealthCheckInterval: 200 * time.Millisecond,
		BreakerFailures: 3, BreakerCooldown: time.Hour,
	})
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	load := func(id string) func(context.Context, string) (User, error) {
		return func(context.Context, string) (User, error) {
			time.Sleep(loaderTime)
			return User{ID: id}, nil
		}
	}
	if _, err := users.Fetch(ctx, "warm", load("warm")); err != nil {
		t.Fatal(err)
	}
	proxy.SetMode(faultproxy.Hang)

	var slowest time.Duration
	for i := range 10 {
		id := fmt.Sprint("cold-", i)
		start := time.Now()
		u, err := users.Fetch(ctx, id, load(id))
		took := time.Since(start)
		if err != nil || u.ID != id {
			t.Fatalf("Fetch with Redis hung = %+v, %v", u, err)
		}
		slowest = max(slowest, took)
	}
	// Bound: one operation timeout plus the loader, with slack for a
	// loaded machine; a call that waited for the 5 s socket timeout fails.
	if bound := opTimeout + loaderTime + 400*time.Millisecond; slowest > bound {
		t.Fatalf("slowest Fetch took %v with Redis hung, over %v", slowest, bound)
	}
	st := c.Stats()
	if !st.BreakerOpen || st.BreakerOpened != 1 {
		t.Fatalf("breaker not open after the failures: %+v", st)
	}
	if st.BreakerRejections == 0 {
		t.Fatalf("no call was refused by the open breaker: %+v", st)
	}
	if got := cacheStats(c, "user"); got.DegradedLoads != 10 {
		t.Fatalf("DegradedLoads = %d, want 10", got.DegradedLoads)
	}
	if _, err := users.Get(ctx, "absent"); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Get with the breaker open = %v, want ErrUnavailable", err)
	}
	t.Logf("slowest call with Redis hung: %v; breaker refusals: %d", slowest, st.BreakerRejections)
}

// TestBreakerRecovers lets the breaker's trial call through once Redis
// answers again.
func TestBreakerRecovers(t *testing.T) {
	srv := redistest.Shared(t)
	kb, _ := keys.New(redistest.Prefix(t))
	c, proxy := viaProxy(t, srv, kb, tiered.Options{
		OpTimeout: 100 * time.Millisecond, HealthCheckInterval: 100 * time.Millisecond,
		BreakerFailures: 2, BreakerCooldown: 200 * time.Millisecond,
	})
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	proxy.SetMode(faultproxy.Hang)
	for i := 0; !c.Stats().BreakerOpen; i++ {
		if i > 20 {
			t.Fatal("breaker never opened")
		}
		_, _ = users.Get(ctx, fmt.Sprint(i))
	}
	proxy.SetMode(faultproxy.Pass)
	eventually(t, 10*time.Second, func() error {
		if err := users.Set(ctx, "after", User{ID: "after"}); err != nil || !c.RedisUp() {
			return fmt.Errorf("no recovery: %v, %+v", err, c.Stats())
		}
		return nil
	})
	if u, err := users.Get(ctx, "after"); err != nil || u.ID != "after" {
		t.Fatalf("Get after recovery = %+v, %v", u, err)
	}
}

// TestPartitionedDeleteIsReplayed cuts one instance off Redis while
// another keeps serving: the cut-off instance's Delete fails, is kept, and
// is replayed when the network heals, so the other instance stops serving
// the deleted value.
func TestPartitionedDeleteIsReplayed(t *testing.T) {
	srv := redistest.Shared(t)
	kb, _ := keys.New(redistest.Prefix(t))
	a, proxy := viaProxy(t, srv, kb, tiered.Options{OpTimeout: 200 * time.Millisecond, HealthCheckInterval: 100 * time.Millisecond})
	b := newEnv(t, tiered.Options{Keys: kb})
	aUsers, _ := tiered.NewCache[User](a, "user")
	ctx := context.Background()
	if err := b.users.Set(ctx, "1", User{ID: "1", Email: "old"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, b.client, b.users, ctx, "1")

	proxy.SetMode(faultproxy.Reset)
	if err := aUsers.Delete(ctx, "1"); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Delete while partitioned = %v, want ErrUnavailable", err)
	}
	if n := a.Stats().PendingInvalidations; n != 1 {
		t.Fatalf("PendingInvalidations = %d, want 1", n)
	}
	if u, err := b.users.Get(ctx, "1"); err != nil || u.Email != "old" {
		t.Fatalf("the other instance should still serve its copy during the partition: %+v, %v", u, err)
	}
	proxy.SetMode(faultproxy.Pass)
	eventually(t, 10*time.Second, func() error {
		if _, err := b.users.Get(ctx, "1"); !errors.Is(err, tiered.ErrNotFound) {
			return fmt.Errorf("the Delete never reached the other instance: %v; %+v", err, a.Stats())
		}
		// The Delete may have reached Redis before the connection was cut:
		// its replay is still owed, once the breaker's probe finds Redis.
		if st := a.Stats(); st.ReplayedInvalidations != 1 || st.PendingInvalidations != 0 {
			return fmt.Errorf("replay stats: %+v", st)
		}
		return nil
	})
}

// TestRedisRestartUnderTraffic stops and restarts Redis while callers keep
// reading and writing: reads never fail, writes fail only as
// ErrUnavailable, and the Client resumes.
func TestRedisRestartUnderTraffic(t *testing.T) {
	srv := redistest.Private(t)
	rdb := redis.NewClient(srv.Options())
	defer rdb.Close()
	kb, _ := keys.New(redistest.Prefix(t))
	c, err := tiered.New(tiered.Options{
		Redis: rdb, Keys: kb, OpTimeout: 100 * time.Millisecond, HealthCheckInterval: 100 * time.Millisecond,
		BreakerCooldown: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	stop := make(chan struct{})
	var reads, writes, writeErrs atomic.Int64
	var failure atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprint(rand.IntN(50))
				if rand.IntN(10) == 0 {
					writes.Add(1)
					if err := users.Set(ctx, id, User{ID: id}); err != nil {
						writeErrs.Add(1)
						if !errors.Is(err, tiered.ErrUnavailable) {
							failure.Store(fmt.Sprint("Set: ", err))
						}
					}
					continue
				}
				reads.Add(1)
				u, err := users.Fetch(ctx, id, func(context.Context, string) (User, error) { return User{ID: id}, nil })
				if err != nil || u.ID != id {
					failure.Store(fmt.Sprintf("Fetch(%s) = %+v, %v", id, u, err))
				}
			}
		})
	}
	// Each phase lasts until the traffic has seen it: reads before the
	// stop, reads and failed writes during the outage, reads after.
	atLeast := func(what string, n *atomic.Int64, more int64) {
		from := n.Load()
		eventually(t, 10*time.Second, func() error {
			if n.Load() < from+more {
				return fmt.Errorf("%s: %d, want %d more", what, n.Load(), more)
			}
			return nil
		})
	}
	atLeast("reads before the stop", &reads, 200)
	srv.Stop()
	atLeast("writes failed while Redis was down", &writeErrs, 20)
	atLeast("reads while Redis was down", &reads, 200)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if st := c.Stats(); !c.RedisUp() || st.PendingInvalidations != 0 {
			return fmt.Errorf("no recovery: %+v", st)
		}
		return nil
	})
	atLeast("reads after recovery", &reads, 200)
	close(stop)
	wg.Wait()
	if f := failure.Load(); f != nil {
		t.Fatal(f)
	}
	if err := users.Set(ctx, "final", User{ID: "final"}); err != nil {
		t.Fatalf("Set after recovery: %v", err)
	}
	if n := rdb.Exists(ctx, kb.Prefix()+":tenant-global:user:final:v1").Val(); n != 1 {
		t.Fatal("write after recovery not in Redis")
	}
	t.Logf("reads %d, writes %d (%d failed while Redis was down), %+v", reads.Load(), writes.Load(), writeErrs.Load(), c.Stats())
}

// TestMalformedBusMessages publishes garbage on the invalidation channel:
// it is counted and ignored, and valid messages still work.
func TestMalformedBusMessages(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1", Email: "old"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, e.client, e.users, ctx, "1")
	channel := e.kb.Prefix() + ":invalidate"
	for _, bad := range []string{"", "{", `{"origin":"x"}`, `{"origin":"x","keys":[1]}`, "\xff\xfe"} {
		e.rdb.Publish(ctx, channel, bad)
	}
	// A Python-style message from another service after the garbage.
	e.rdb.Set(ctx, e.key(t, ctx, "1"), `{"id": "1", "email": "new"}`, time.Minute)
	e.rdb.Publish(ctx, channel, `{"origin": "py-api", "keys": ["`+e.key(t, ctx, "1")+`"]}`)
	awaitEmail(t, e.users, ctx, "1", "new", "a valid invalidation following garbage")
	// The garbage is counted on the bus's goroutine; on a loaded machine the
	// count may still lag when the valid invalidation has been applied.
	eventually(t, 10*time.Second, func() error {
		if n := e.client.Stats().MalformedMessages; n != 5 {
			return fmt.Errorf("MalformedMessages = %d, want 5", n)
		}
		return nil
	})
	if !e.client.RedisUp() {
		t.Fatal("garbage on the channel took the subscription down")
	}
}

// TestCloseLeavesNoGoroutines runs every kind of call, closes, and checks
// that nothing the Client started is still running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := redis.NewClient(srv.Options())
	kb, _ := keys.New(redistest.Prefix(t))
	ignore := goleak.IgnoreCurrent()
	c, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb})
	if err != nil {
		t.Fatal(err)
	}
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	load := func(context.Context, string) (User, error) { return User{ID: "1"}, nil }
	_, _ = users.Fetch(ctx, "1", load)
	_, _ = users.Get(ctx, "1")
	_ = users.Set(ctx, "2", User{ID: "2"})
	_ = users.Delete(ctx, "2")
	_, _ = users.FetchMany(ctx, []string{"1", "3"}, func(context.Context, []string) (map[string]User, error) {
		return map[string]User{"3": {ID: "3"}}, nil
	})
	_ = users.Warm(ctx, map[string]User{"4": {ID: "4"}})
	// A load still running when Close is called is cancelled and awaited.
	started := make(chan struct{})
	go func() {
		_, _ = users.Fetch(ctx, "slow", func(ctx context.Context, _ string) (User, error) {
			close(started)
			<-ctx.Done()
			return User{}, ctx.Err()
		})
	}()
	<-started
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, "1"); !errors.Is(err, tiered.ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	_ = rdb.Close()
	goleak.VerifyNone(t, ignore)
}
