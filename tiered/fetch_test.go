package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// inBubble runs f with an L1-only Client inside a synctest bubble, where
// synctest.Wait tells when every goroutine is blocked: concurrency tests
// then need no sleeps.
func inBubble(t *testing.T, opts tiered.Options, f func(t *testing.T, users *tiered.Cache[User])) {
	synctest.Test(t, func(t *testing.T) {
		c, err := tiered.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		users, err := tiered.NewCache[User](c, "user")
		if err != nil {
			t.Fatal(err)
		}
		f(t, users)
	})
}

func TestFetchCoalescesInProcess(t *testing.T) {
	inBubble(t, tiered.Options{}, func(t *testing.T, users *tiered.Cache[User]) {
		const callers = 100
		var loads atomic.Int64
		release := make(chan struct{})
		load := func(context.Context, string) (User, error) {
			loads.Add(1)
			<-release
			return User{ID: "1"}, nil
		}
		var wg sync.WaitGroup
		results := make(chan error, callers)
		for range callers {
			wg.Go(func() {
				u, err := users.Fetch(context.Background(), "1", load)
				if err == nil && u.ID != "1" {
					err = fmt.Errorf("got %+v", u)
				}
				results <- err
			})
		}
		synctest.Wait() // every caller is in the flight or waiting on it
		close(release)
		wg.Wait()
		close(results)
		for err := range results {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := loads.Load(); n != 1 {
			t.Fatalf("%d loads for %d concurrent callers, want 1", n, callers)
		}
	})
}

func TestFetchLoaderPanic(t *testing.T) {
	inBubble(t, tiered.Options{}, func(t *testing.T, users *tiered.Cache[User]) {
		release := make(chan struct{})
		var calls atomic.Int64
		load := func(context.Context, string) (User, error) {
			calls.Add(1)
			<-release
			panic("boom")
		}
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for range 10 {
			wg.Go(func() {
				_, err := users.Fetch(context.Background(), "p", load)
				errs <- err
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			var pe *tiered.PanicError
			if !errors.Is(err, tiered.ErrLoaderPanic) || !errors.As(err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
				t.Fatalf("waiter got %v, want a PanicError for boom", err)
			}
		}
		// Nothing was cached: the next call loads again, and succeeds.
		u, err := users.Fetch(context.Background(), "p", func(context.Context, string) (User, error) { return User{ID: "p"}, nil })
		if err != nil || u.ID != "p" || calls.Load() != 1 {
			t.Fatalf("after the panic: %+v, %v (panicking loader ran %d times)", u, err, calls.Load())
		}
	})
}

func TestFetchCancelledCallerLeavesLoadRunning(t *testing.T) {
	inBubble(t, tiered.Options{}, func(t *testing.T, users *tiered.Cache[User]) {
		release := make(chan struct{})
		var loaderCtxErr atomic.Value
		load := func(ctx context.Context, _ string) (User, error) {
			<-release
			loaderCtxErr.Store(fmt.Sprint(ctx.Err()))
			return User{ID: "1"}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := users.Fetch(ctx, "1", load)
			first <- err
		}()
		second := make(chan error, 1)
		go func() {
			_, err := users.Fetch(context.Background(), "1", load)
			second <- err
		}()
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case err := <-first:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled caller got %v", err)
			}
		default:
			t.Fatal("cancelled caller did not return at once")
		}
		close(release)
		if err := <-second; err != nil {
			t.Fatalf("other caller got %v", err)
		}
		if got := loaderCtxErr.Load(); got != "<nil>" {
			t.Fatalf("the loader's context was %v after the first caller cancelled", got)
		}
	})
}

func TestFetchLoadTimeout(t *testing.T) {
	inBubble(t, tiered.Options{LoadTimeout: time.Second}, func(t *testing.T, users *tiered.Cache[User]) {
		start := time.Now()
		_, err := users.Fetch(context.Background(), "slow", func(ctx context.Context, _ string) (User, error) {
			<-ctx.Done()
			return User{}, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("Fetch = %v after %v; want DeadlineExceeded after 1s", err, time.Since(start))
		}
	})
}

func TestFetchErrorsAreNotCached(t *testing.T) {
	_, users := l1Only(t)
	ctx := context.Background()
	calls := 0
	failing := func(context.Context, string) (User, error) {
		calls++
		return User{}, fmt.Errorf("db down")
	}
	for range 2 {
		if _, err := users.Fetch(ctx, "1", failing); err == nil || err.Error() != "db down" {
			t.Fatalf("Fetch = %v", err)
		}
	}
	if calls != 2 {
		t.Fatalf("failing loader ran %d times, want 2", calls)
	}
	_, err := users.Fetch(ctx, "2", func(context.Context, string) (User, error) {
		return User{}, fmt.Errorf("user 2: %w", tiered.ErrNotFound)
	})
	if !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("not-found loader: %v", err)
	}
	if _, err := users.Fetch(ctx, "3", nil); err == nil {
		t.Fatal("nil loader accepted")
	}
}

func TestFetchWithRedis(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	loads := 0
	load := func(context.Context, string) (User, error) {
		loads++
		return User{ID: "1", Email: "loaded"}, nil
	}
	u, err := e.users.Fetch(ctx, "1", load)
	if err != nil || u.Email != "loaded" {
		t.Fatalf("Fetch = %+v, %v", u, err)
	}
	if got := e.rdb.Get(ctx, e.key(t, ctx, "1")).Val(); got != `{"id":"1","email":"loaded"}` {
		t.Fatalf("Redis holds %q", got)
	}
	awaitL1(t, e.client, e.users, ctx, "1")
	if _, err := e.users.Fetch(ctx, "1", load); err != nil || loads != 1 {
		t.Fatalf("second Fetch: %v, loads %d", err, loads)
	}
	st := cacheStats(e.client, "user")
	if st.LeasesWon != 1 || st.Loads != 1 || st.Misses != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWrap(t *testing.T) {
	_, users := l1Only(t)
	ctx := context.Background()
	var got []string
	get := users.Wrap(func(ctx context.Context, id string) (User, error) {
		got = append(got, id)
		return User{ID: id}, nil
	}, tiered.Suffix("with_orgs"))
	for _, id := range []string{"a", "b"} {
		if u, err := get(ctx, id); err != nil || u.ID != id {
			t.Fatalf("get(%s) = %+v, %v", id, u, err)
		}
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("loader saw %v", got)
	}
	if nilGet := users.Wrap(nil); nilGet != nil {
		if _, err := nilGet(ctx, "x"); err == nil {
			t.Fatal("Wrap(nil) loaded")
		}
	}
}

// TestHitPathDoesNotAllocate holds the promise of the read path: an
// in-process hit through Get or a Wrap'd loader allocates nothing.
func TestHitPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own; run without -race")
	}
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1"}, tiered.Suffix("s")); err != nil {
		t.Fatal(err)
	}
	get := e.users.Wrap(func(ctx context.Context, id string) (User, error) { return User{ID: id}, nil }, tiered.Suffix("s"))
	awaitL1(t, e.client, e.users, ctx, "1", tiered.Suffix("s"))
	before := cacheStats(e.client, "user").HitsL1
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := get(ctx, "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.users.Get(ctx, "1", tiered.Suffix("s")); err != nil {
			t.Fatal(err)
		}
	})
	if hits := cacheStats(e.client, "user").HitsL1 - before; hits < 2000 {
		t.Fatalf("only %d of the measured reads hit L1", hits)
	}
	// ristretto's read buffer allocates a small slice every few hundred
	// reads; anything at or above one allocation per read is ours.
	if allocs >= 1 {
		t.Fatalf("L1 hit allocates %v times per two reads, want 0", allocs)
	}
}

func TestFetchMany(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	// "a" in both tiers, "b" in Redis only, the rest nowhere.
	if err := e.users.Set(ctx, "a", User{ID: "a", Email: "set"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, e.client, e.users, ctx, "a")
	e.rdb.Set(ctx, e.key(t, ctx, "b"), `{"id":"b","email":"redis"}`, time.Minute)
	var asked [][]string
	load := func(ctx context.Context, missing []string) (map[string]User, error) {
		asked = append(asked, append([]string(nil), missing...))
		out := map[string]User{}
		for _, id := range missing {
			if id != "ghost" {
				out[id] = User{ID: id, Email: "loaded"}
			}
		}
		out["unasked"] = User{ID: "unasked"}
		return out, nil
	}
	got, err := e.users.FetchMany(ctx, []string{"a", "b", "c", "d", "c", "ghost"}, load)
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 {
		t.Fatalf("loader called %d times", len(asked))
	}
	sort.Strings(asked[0])
	if fmt.Sprint(asked[0]) != "[c d ghost]" {
		t.Fatalf("loader asked for %v", asked[0])
	}
	want := map[string]string{"a": "set", "b": "redis", "c": "loaded", "d": "loaded"}
	if len(got) != len(want) {
		t.Fatalf("FetchMany = %v", got)
	}
	for id, email := range want {
		if got[id].Email != email {
			t.Fatalf("FetchMany[%s] = %+v, want email %s", id, got[id], email)
		}
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "c"), e.key(t, ctx, "d")).Val(); n != 2 {
		t.Fatalf("%d of 2 loaded values cached in Redis", n)
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "unasked"), "{"+e.key(t, ctx, "ghost")+"}:lease").Val(); n != 0 {
		t.Fatal("an unasked value was cached, or a lease was left behind")
	}
	// Everything found is now cached: no loader call.
	again, err := e.users.FetchMany(ctx, []string{"a", "b", "c", "d"}, func(context.Context, []string) (map[string]User, error) {
		t.Fatal("loader called for cached ids")
		return nil, nil
	})
	if err != nil || len(again) != 4 {
		t.Fatalf("second FetchMany = %v, %v", again, err)
	}
	if _, err := e.users.FetchMany(ctx, []string{"ok", "bad:id"}, load); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("invalid id: %v", err)
	}
	if _, err := e.users.FetchMany(ctx, []string{"x"}, func(context.Context, []string) (map[string]User, error) {
		panic("batch boom")
	}); !errors.Is(err, tiered.ErrLoaderPanic) {
		t.Fatalf("panicking batch loader: %v", err)
	}
}

// TestFetchManyLeaseGuard deletes one id while the batch loads: that id is
// returned but not cached; the others are.
func TestFetchManyLeaseGuard(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	got, err := e.users.FetchMany(ctx, []string{"x", "y"}, func(ctx context.Context, missing []string) (map[string]User, error) {
		if err := peer.users.Delete(ctx, "x"); err != nil {
			return nil, err
		}
		return map[string]User{"x": {ID: "x"}, "y": {ID: "y"}}, nil
	})
	if err != nil || len(got) != 2 {
		t.Fatalf("FetchMany = %v, %v", got, err)
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "x")).Val(); n != 0 {
		t.Fatal("x was cached although it was deleted during the load")
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "y")).Val(); n != 1 {
		t.Fatal("y was not cached")
	}
	// Refused by the lease check in Redis, or before it, by the delete's
	// invalidation having reached this process.
	if st := cacheStats(e.client, "user"); st.LeaseLost+st.FillsRefused != 1 {
		t.Fatalf("LeaseLost %d + FillsRefused %d, want 1", st.LeaseLost, st.FillsRefused)
	}
}

func TestFetchManyL1Only(t *testing.T) {
	_, users := l1Only(t)
	ctx := context.Background()
	got, err := users.FetchMany(ctx, []string{"1", "2"}, func(ctx context.Context, missing []string) (map[string]User, error) {
		return map[string]User{"1": {ID: "1"}}, nil
	})
	if err != nil || len(got) != 1 || got["1"].ID != "1" {
		t.Fatalf("FetchMany = %v, %v", got, err)
	}
}
