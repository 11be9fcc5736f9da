package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/tiered"
)

// peerEnv is a second Client on e's Redis and key prefix: another process.
func peerEnv(t *testing.T, e *env, opts tiered.Options, copts ...tiered.Option) *env {
	t.Helper()
	opts.Keys, opts.Redis = e.kb, e.rdb
	return newEnv(t, opts, copts...)
}

func TestNegativeCaching(t *testing.T) {
	e := newEnv(t, tiered.Options{}, tiered.NegativeTTL(time.Minute))
	ctx := context.Background()
	var loads atomic.Int32
	missing := func(context.Context, string) (User, error) {
		loads.Add(1)
		return User{}, fmt.Errorf("no row: %w", tiered.ErrNotFound)
	}
	for range 3 {
		if _, err := e.users.Fetch(ctx, "ghost", missing); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("Fetch of a missing id: %v", err)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	key := e.key(t, ctx, "ghost")
	if v := e.rdb.Get(ctx, key).Val(); v != "null" {
		t.Fatalf("Redis holds %q, want null", v)
	}
	if ttl := e.rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL %v", ttl)
	}
	if _, err := e.users.Get(ctx, "ghost"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}

	// Another process, without the option, honours the absence too.
	peer := peerEnv(t, e, tiered.Options{})
	if _, err := peer.users.Fetch(ctx, "ghost", missing); !errors.Is(err, tiered.ErrNotFound) || loads.Load() != 1 {
		t.Fatalf("peer Fetch: %v after %d loads", err, loads.Load())
	}
	if got := cacheStats(peer.client, "user").NegativeHits; got != 1 {
		t.Fatalf("peer NegativeHits = %d", got)
	}

	// A Set replaces the absence, here and in the other process.
	if err := e.users.Set(ctx, "ghost", User{ID: "ghost", Email: "now@here"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*env{e, peer} {
		eventually(t, 10*time.Second, func() error {
			u, err := c.users.Fetch(ctx, "ghost", missing)
			if err != nil || u.Email != "now@here" {
				return fmt.Errorf("Fetch after Set = %+v, %v", u, err)
			}
			return nil
		})
	}
	if loads.Load() != 1 {
		t.Fatalf("%d loads after the Set", loads.Load())
	}
}

func TestNegativeCachingInBatches(t *testing.T) {
	e := newEnv(t, tiered.Options{}, tiered.NegativeTTL(time.Minute))
	ctx := context.Background()
	var asked atomic.Int32
	load := func(_ context.Context, ids []string) (map[string]User, error) {
		asked.Add(int32(len(ids)))
		return map[string]User{"a": {ID: "a"}}, nil
	}
	for round := range 2 {
		got, err := e.users.FetchMany(ctx, []string{"a", "b", "c"}, load)
		if err != nil || len(got) != 1 || got["a"].ID != "a" {
			t.Fatalf("round %d: %v, %v", round, got, err)
		}
	}
	if n := asked.Load(); n != 3 {
		t.Fatalf("loader asked for %d ids, want 3 (once each)", n)
	}
	if v := e.rdb.Get(ctx, e.key(t, ctx, "b")).Val(); v != "null" {
		t.Fatalf("b holds %q", v)
	}
}

func TestServeStaleWhileRefreshing(t *testing.T) {
	const ttl = 200 * time.Millisecond
	e := newEnv(t, tiered.Options{TTLJitter: -1}, tiered.TTL(ttl), tiered.ServeStale(time.Minute))
	ctx := context.Background()
	var version atomic.Int32
	var failing atomic.Bool
	load := func(_ context.Context, id string) (User, error) {
		if failing.Load() {
			return User{}, errors.New("database down")
		}
		return User{ID: id, Email: fmt.Sprint("v", version.Add(1))}, nil
	}
	if u, err := e.users.Fetch(ctx, "1", load); err != nil || u.Email != "v1" {
		t.Fatalf("first Fetch = %+v, %v", u, err)
	}
	if ttl := e.rdb.PTTL(ctx, e.key(t, ctx, "1")).Val(); ttl < 50*time.Second {
		t.Fatalf("PTTL %v: the value must outlive its TTL by the stale window", ttl)
	}

	// Past the TTL and with the loader failing, the old value is served
	// (never an error), and the failed refreshes are counted.
	failing.Store(true)
	waitPast(ttl)
	eventually(t, 10*time.Second, func() error {
		u, err := e.users.Fetch(ctx, "1", load)
		if err != nil || u.Email != "v1" {
			t.Fatalf("stale Fetch = %+v, %v", u, err)
		}
		if s := cacheStats(e.client, "user"); s.StaleServed == 0 || s.RefreshErrors == 0 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})

	// The database is back: a refresh replaces the value, in the
	// background, while the stale one is still served.
	failing.Store(false)
	eventually(t, 10*time.Second, func() error {
		u, err := e.users.Fetch(ctx, "1", load)
		switch {
		case err != nil:
			t.Fatalf("Fetch: %v", err)
		case u.Email == "v1":
			return errors.New("still the stale value")
		}
		return nil
	})

	// A deleted value is never served stale.
	if err := e.users.Delete(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if u, err := e.users.Fetch(ctx, "1", load); err == nil {
		t.Fatalf("Fetch after Delete with the loader failing = %+v", u)
	}
}

func TestEarlyRefreshKeepsAHotKeyLoaded(t *testing.T) {
	// With a huge beta every hit draws a refresh: what matters here is
	// that a refresh replaces the value in the background, once at a time.
	e := newEnv(t, tiered.Options{}, tiered.TTL(time.Minute), tiered.EarlyRefresh(1e12))
	ctx := context.Background()
	var version atomic.Int32
	release := make(chan struct{})
	load := func(_ context.Context, id string) (User, error) {
		v := version.Add(1)
		if v > 1 {
			<-release // the refresh is held until the test lets it go
		}
		return User{ID: id, Email: fmt.Sprint("v", v)}, nil
	}
	if u, err := e.users.Fetch(ctx, "hot", load); err != nil || u.Email != "v1" {
		t.Fatalf("first Fetch = %+v, %v", u, err)
	}
	awaitL1(t, e.client, e.users, ctx, "hot")
	// Hits keep returning the current value while the refresh is held,
	// and start no second refresh.
	for range 50 {
		if u, err := e.users.Fetch(ctx, "hot", load); err != nil || u.Email != "v1" {
			t.Fatalf("Fetch during the refresh = %+v, %v", u, err)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if n := version.Load(); n != 2 {
			return fmt.Errorf("%d loads", n)
		}
		return nil
	})
	close(release)
	eventually(t, 10*time.Second, func() error {
		if v := e.rdb.Get(ctx, e.key(t, ctx, "hot")).Val(); v != `{"id":"hot","email":"v2"}` {
			return fmt.Errorf("Redis holds %s", v)
		}
		return nil
	})
	if s := cacheStats(e.client, "user"); s.Refreshes == 0 || s.Loads < 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTTLJitterSpreadsExpiries(t *testing.T) {
	for _, jitter := range []float64{0, -1} {
		e := newEnv(t, tiered.Options{TTLJitter: jitter}, tiered.TTL(100*time.Second))
		ctx := context.Background()
		values := map[string]User{}
		for i := range 200 {
			values[fmt.Sprint(i)] = User{ID: fmt.Sprint(i)}
		}
		if err := e.users.Warm(ctx, values); err != nil {
			t.Fatal(err)
		}
		lo, hi := time.Hour, time.Duration(0)
		for id := range values {
			ttl := e.rdb.PTTL(ctx, e.key(t, ctx, id)).Val()
			lo, hi = min(lo, ttl), max(hi, ttl)
		}
		switch {
		case hi > 100*time.Second || lo < 85*time.Second:
			t.Fatalf("jitter %v: PTTLs from %v to %v", jitter, lo, hi)
		case jitter == 0 && hi-lo < 5*time.Second:
			t.Fatalf("default jitter: PTTLs only from %v to %v", lo, hi)
		case jitter < 0 && hi-lo > 5*time.Second:
			t.Fatalf("no jitter: PTTLs from %v to %v", lo, hi)
		}
	}
}

// waitPast returns once d has passed: what a test of expiry must wait for.
func waitPast(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(d / 10)
	}
}

// TestExpiryDoesNotRefuseTheRefill: the read that finds a key just expired
// makes Redis report the expiry, which arrives while the key is loading;
// that report alone must not keep the load from being stored, or every
// expiry would cost each process a second load.
func TestExpiryDoesNotRefuseTheRefill(t *testing.T) {
	const ttl = 100 * time.Millisecond
	e := newEnv(t, tiered.Options{TTLJitter: -1}, tiered.TTL(ttl))
	ctx := context.Background()
	var loads atomic.Int32
	load := func(_ context.Context, id string) (User, error) {
		loads.Add(1)
		time.Sleep(10 * time.Millisecond) // the database
		return User{ID: id}, nil
	}
	const rounds = 5
	for range rounds {
		if _, err := e.users.Fetch(ctx, "1", load); err != nil {
			t.Fatal(err)
		}
		waitPast(ttl + 20*time.Millisecond)
	}
	if s := cacheStats(e.client, "user"); s.FillsRefused != 0 || loads.Load() != rounds {
		t.Fatalf("%d loads for %d expiries, %d fills refused", loads.Load(), rounds, s.FillsRefused)
	}
}
