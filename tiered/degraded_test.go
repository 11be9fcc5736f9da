package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/faultproxy"
	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestRedisDownAtStartAndBack starts a Client with Redis stopped, serves
// from the loader, then starts Redis and expects the Client to resume.
func TestRedisDownAtStartAndBack(t *testing.T) {
	srv := redistest.Private(t)
	srv.Stop()
	logs := &syncBuffer{}
	rdb := redis.NewClient(srv.Options())
	defer rdb.Close()
	kb, _ := keys.New(redistest.Prefix(t))
	start := time.Now()
	c, err := tiered.New(tiered.Options{
		Redis: rdb, Keys: kb, StartupWait: 300 * time.Millisecond,
		HealthCheckInterval: 100 * time.Millisecond, DegradedTTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatalf("New with Redis down: %v", err)
	}
	defer c.Close()
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("New took %v with Redis down", waited)
	}
	if c.RedisUp() {
		t.Fatal("RedisUp with Redis stopped")
	}
	if n := c.Stats().FlushesDown; n != 0 {
		t.Fatalf("FlushesDown = %d before Redis was ever up", n)
	}
	if !logs.Contains("Failed to connect to Redis:") || !logs.Contains("Caching disabled.") {
		t.Fatalf("no start-up warning in the template's words; logs:\n%s", logs)
	}
	users, err := tiered.NewCache[User](c, "user")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loads := 0
	load := func(context.Context, string) (User, error) {
		loads++
		return User{ID: "1", Email: "from-db"}, nil
	}
	if u, err := users.Fetch(ctx, "1", load); err != nil || u.Email != "from-db" {
		t.Fatalf("Fetch with Redis down = %+v, %v", u, err)
	}
	// The degraded install is visible to the very next read: served
	// in-process (within DegradedTTL) rather than loading again.
	if u, err := users.Get(ctx, "1"); err != nil || u.Email != "from-db" || loads != 1 {
		t.Fatalf("Get right after a degraded Fetch = %+v, %v (loads %d)", u, err, loads)
	}
	if _, err := users.Fetch(ctx, "1", load); err != nil || loads != 1 || cacheStats(c, "user").HitsL1 != 2 {
		t.Fatalf("second Fetch = %v, loads %d, L1 hits %d; want served in-process", err, loads, cacheStats(c, "user").HitsL1)
	}
	if _, err := users.Get(ctx, "absent"); !errors.Is(err, tiered.ErrUnavailable) || errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get with Redis down = %v; want ErrUnavailable, not ErrNotFound", err)
	}
	if err := users.Delete(ctx, "1"); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Delete with Redis down = %v; want ErrUnavailable", err)
	}
	before := loads
	if _, err := users.Fetch(ctx, "1", load); err != nil || loads != before+1 {
		t.Fatalf("after a failed Delete the L1 copy must be gone: %v, loads %d->%d", err, before, loads)
	}
	if err := users.Set(ctx, "2", User{ID: "2"}); !errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Set with Redis down = %v; want ErrUnavailable", err)
	}
	if st := cacheStats(c, "user"); st.DegradedLoads == 0 {
		t.Fatalf("no degraded loads counted: %+v", st)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if !c.RedisUp() {
			return errors.New("Client did not resume after Redis started")
		}
		return nil
	})
	if !logs.Contains("caching enabled") {
		t.Fatalf("no info line when Redis returned; logs:\n%s", logs)
	}
	// The failed Delete of 1 and Set of 2 are replayed as deletions.
	eventually(t, 10*time.Second, func() error {
		if st := c.Stats(); st.PendingInvalidations != 0 {
			return fmt.Errorf("invalidations not replayed: %+v", st)
		}
		return nil
	})
	if st := c.Stats(); st.ReplayedInvalidations != 2 {
		t.Fatalf("ReplayedInvalidations = %d, want 2", st.ReplayedInvalidations)
	}
	// The degraded copy was flushed on the way back: the next read goes to
	// Redis (empty after the restart) and loads.
	before = loads
	if _, err := users.Fetch(ctx, "1", load); err != nil || loads != before+1 {
		t.Fatalf("Fetch after recovery: %v, loads %d->%d", err, before, loads)
	}
	if n := rdb.Exists(ctx, kb.Prefix()+":tenant-global:user:1:v1").Val(); n != 1 {
		t.Fatal("value not written to Redis after recovery")
	}
}

// TestRedisLostMidway stops Redis under a running Client.
func TestRedisLostMidway(t *testing.T) {
	srv := redistest.Private(t)
	rdb := redis.NewClient(srv.Options())
	defer rdb.Close()
	kb, _ := keys.New(redistest.Prefix(t))
	c, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, HealthCheckInterval: 100 * time.Millisecond, DegradedTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	if err := users.Set(ctx, "1", User{ID: "1", Email: "cached"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// RedisUp turns false as the loss is handled, before the flush is
	// counted: wait for both.
	eventually(t, 5*time.Second, func() error {
		if st := c.Stats(); st.RedisUp || st.FlushesDown == 0 {
			return fmt.Errorf("no flush when the subscription was lost: %+v", st)
		}
		return nil
	})
	u, err := users.Fetch(ctx, "1", func(context.Context, string) (User, error) { return User{ID: "1", Email: "db"}, nil })
	if err != nil || u.Email != "db" {
		t.Fatalf("Fetch with Redis gone = %+v, %v; want the loader's value", u, err)
	}
}

// TestRedisDownCostsOneCall: with Redis refusing connections, or accepting
// them and never answering, only the first call after the failure waits
// for Redis; every later one goes straight to its loader, and finding out
// that Redis is back is the breaker's probe's job. The timings are logged
// (go test -v -run TestRedisDownCostsOneCall ./tiered), not asserted.
func TestRedisDownCostsOneCall(t *testing.T) {
	const loaderTime, calls = 50 * time.Millisecond, 30
	for _, mode := range []string{"refused", "hung"} {
		t.Run(mode, func(t *testing.T) {
			ro := &redis.Options{ContextTimeoutEnabled: true}
			switch mode {
			case "refused":
				ro.Addr = closedPort(t)
			case "hung":
				p, err := faultproxy.Start(redistest.Shared(t).Addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(p.Close)
				p.SetMode(faultproxy.Hang)
				ro.Addr = p.Addr()
			}
			rdb := redis.NewClient(ro)
			t.Cleanup(func() { _ = rdb.Close() })
			kb, _ := keys.New(redistest.Prefix(t))
			start := time.Now()
			c, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			newTook := time.Since(start)
			users, _ := tiered.NewCache[User](c, "user")
			load := func(ctx context.Context, id string) (User, error) {
				time.Sleep(loaderTime) // the database
				return User{ID: id}, nil
			}
			ctx := context.Background()
			var slow int
			var worst time.Duration
			for i := range calls {
				begin := time.Now()
				if _, err := users.Fetch(ctx, fmt.Sprint(i), load); err != nil {
					t.Fatalf("Fetch %d: %v", i, err)
				}
				took := time.Since(begin)
				worst = max(worst, took)
				if took > loaderTime+20*time.Millisecond {
					slow++
				}
			}
			st := c.Stats()
			start = time.Now()
			if err := c.Close(); err != nil {
				t.Logf("Close: %v", err)
			}
			t.Logf("%s: New %v; %d of %d cold Fetch calls took over loader+20ms (worst %v); Close %v; Redis calls failed %d, refused by the breaker %d",
				mode, newTook.Round(time.Millisecond), slow, calls, worst.Round(time.Millisecond),
				time.Since(start).Round(time.Millisecond), st.RedisErrors, st.BreakerRejections)
			if st.RedisErrors > 1 {
				t.Errorf("%d calls waited for Redis after it was first seen failing, want at most 1", st.RedisErrors)
			}
			if !st.BreakerOpen || st.BreakerRejections < calls-1 {
				t.Errorf("breaker open %v, %d refusals", st.BreakerOpen, st.BreakerRejections)
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
