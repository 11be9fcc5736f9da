package tiered_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// source is a versioned source of truth: loaders read it, writers move it.
type source struct{ v atomic.Int64 }

func (s *source) user(id string) User { return User{ID: id, Email: fmt.Sprint("v", s.v.Load())} }

// heldLoad starts a Fetch whose loader reads src, says so on loaded, then
// waits for proceed: a load that read the source before a write.
func heldLoad(users *tiered.Cache[User], src *source, id string) (loaded, proceed chan struct{}, done chan User) {
	loaded, proceed, done = make(chan struct{}), make(chan struct{}), make(chan User, 1)
	go func() {
		u, _ := users.Fetch(context.Background(), id, func(context.Context, string) (User, error) {
			u := src.user(id)
			close(loaded)
			<-proceed
			return u, nil
		})
		done <- u
	}()
	return loaded, proceed, done
}

// fetchNotJoining runs a Fetch that must not join the held load: if it
// does, it cannot return until proceed is closed, and then returns what
// the held load read. The timeout only bounds a failing run.
func fetchNotJoining(t *testing.T, users *tiered.Cache[User], src *source, id string, proceed chan struct{}) User {
	t.Helper()
	got := make(chan User, 1)
	go func() {
		u, _ := users.Fetch(context.Background(), id, func(context.Context, string) (User, error) { return src.user(id), nil })
		got <- u
	}()
	select {
	case u := <-got:
		return u
	case <-time.After(10 * time.Second):
		close(proceed)
		t.Fatalf("a Fetch that started after the write joined a load that began before it: got %+v", <-got)
		return User{}
	}
}

// TestReadAfterWriteNeverJoinsAnOlderLoad: a Fetch that starts after this
// process's Delete or Set returned, or after an invalidation of its key was
// applied here, never returns what a load that began earlier read.
func TestReadAfterWriteNeverJoinsAnOlderLoad(t *testing.T) {
	for _, write := range []string{"delete", "set", "peer delete"} {
		t.Run(write, func(t *testing.T) {
			e := newEnv(t, tiered.Options{})
			peer := newEnv(t, tiered.Options{Keys: e.kb})
			ctx := context.Background()
			src := &source{}
			src.v.Store(1)
			loaded, proceed, done := heldLoad(e.users, src, "1")
			<-loaded
			src.v.Store(2)
			switch write {
			case "delete":
				if err := e.users.Delete(ctx, "1"); err != nil {
					t.Fatal(err)
				}
			case "set":
				if err := e.users.Set(ctx, "1", src.user("1")); err != nil {
					t.Fatal(err)
				}
			case "peer delete":
				before := e.client.Stats().InvalidationsReceived
				if err := peer.users.Delete(ctx, "1"); err != nil {
					t.Fatal(err)
				}
				eventually(t, 5*time.Second, func() error {
					if e.client.Stats().InvalidationsReceived == before {
						return errors.New("the peer's invalidation has not arrived")
					}
					return nil
				})
			}
			if u := fetchNotJoining(t, e.users, src, "1", proceed); u.Email != "v2" {
				t.Fatalf("Fetch after the %s = %+v, want v2", write, u)
			}
			close(proceed)
			<-done // the older load may return v1 to its own callers
			if u, err := e.users.Get(ctx, "1"); err == nil && u.Email != "v2" {
				t.Fatalf("after the older load ended Get = %+v", u)
			}
		})
	}
}

// TestFillNoticeFencesALateInstall: a read of v1 from Redis whose install is
// delayed past the key's expiry and another process's fill of v2 must not
// land afterwards.
func TestFillNoticeFencesALateInstall(t *testing.T) {
	gate := newGatedCodec(`{"id":"1","email":"v1"}`)
	e := newEnv(t, tiered.Options{})
	slow, err := tiered.NewCache[User](e.client, "slowuser", tiered.Codec(gate))
	if err != nil {
		t.Fatal(err)
	}
	peerEnv := newEnv(t, tiered.Options{Keys: e.kb})
	peer, err := tiered.NewCache[User](peerEnv.client, "slowuser")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key, _ := slow.Key(ctx, "1")
	e.rdb.Set(ctx, key, `{"id":"1","email":"v1"}`, time.Minute)
	read := make(chan User, 1)
	go func() { u, _ := slow.Get(ctx, "1"); read <- u }()
	<-gate.entered      // read v1 from Redis, not installed yet
	e.rdb.Del(ctx, key) // the key expires
	before := e.client.Stats().InvalidationsReceived
	if _, err := peer.Fetch(ctx, "1", func(context.Context, string) (User, error) { return User{ID: "1", Email: "v2"}, nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if e.client.Stats().InvalidationsReceived == before {
			return errors.New("the fill notice has not arrived")
		}
		return nil
	})
	close(gate.release)
	<-read
	var u User
	eventually(t, 5*time.Second, func() error {
		hits := cacheStats(e.client, "slowuser").HitsL1
		if u, err = slow.Get(ctx, "1"); err != nil || cacheStats(e.client, "slowuser").HitsL1 == hits {
			return fmt.Errorf("not served in-process yet (%+v, %v)", u, err)
		}
		return nil
	})
	if u.Email != "v2" {
		t.Fatalf("in-process copy after the fill = %+v, want v2", u)
	}
}

// TestRefreshBeatsAnOlderLease: a refresh's value wins over a load that
// held the lease before it, in Redis and in-process.
func TestRefreshBeatsAnOlderLease(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	src := &source{}
	src.v.Store(1)
	loaded, proceed, done := heldLoad(peer.users, src, "1") // holds the lease
	<-loaded
	src.v.Store(2)
	u, err := e.users.Fetch(ctx, "1", func(context.Context, string) (User, error) { return src.user("1"), nil }, tiered.Reload())
	if err != nil || u.Email != "v2" {
		t.Fatalf("refresh = %+v, %v", u, err)
	}
	close(proceed)
	<-done
	var stored User
	if err := json.Unmarshal([]byte(e.rdb.Get(ctx, e.key(t, ctx, "1")).Val()), &stored); err != nil || stored.Email != "v2" {
		t.Fatalf("Redis holds %+v (%v) after the older load's fill, want v2", stored, err)
	}
	for _, c := range []*tiered.Cache[User]{e.users, peer.users} {
		awaitEmail(t, c, ctx, "1", "v2", "the older load's fill")
	}
}

type marshalPanics struct{ X int }

func (marshalPanics) MarshalJSON() ([]byte, error) { panic("marshal boom") }

type unmarshalPanics struct{ X int }

func (*unmarshalPanics) UnmarshalJSON([]byte) error { panic("unmarshal boom") }

// TestCodecPanicsAreErrors: a panic while encoding a loaded value or
// decoding a stored one reaches every caller as an error; the process
// lives and nothing is cached.
func TestCodecPanicsAreErrors(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	enc, _ := tiered.NewCache[marshalPanics](e.client, "encpanic")
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, err := enc.Fetch(ctx, "1", func(context.Context, string) (marshalPanics, error) { return marshalPanics{X: 1}, nil })
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; !errors.Is(err, tiered.ErrLoaderPanic) {
			t.Fatalf("Fetch of a value whose encoding panics = %v, want ErrLoaderPanic", err)
		}
	}
	key, _ := enc.Key(ctx, "1")
	if n := e.rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("a value whose encoding panicked was stored")
	}

	dec, _ := tiered.NewCache[unmarshalPanics](e.client, "decpanic")
	key, _ = dec.Key(ctx, "1")
	e.rdb.Set(ctx, key, `{"X":1}`, time.Minute)
	if _, err := dec.Get(ctx, "1"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of a value whose decoding panics = %v, want ErrNotFound", err)
	}
	if got := e.rdb.Get(ctx, key).Val(); got != `{"X":1}` {
		t.Fatalf("the value was replaced by %q", got)
	}
	if _, err := dec.Fetch(ctx, "1", func(context.Context, string) (unmarshalPanics, error) { return unmarshalPanics{X: 2}, nil }); err != nil {
		t.Fatalf("Fetch over a value whose decoding panics = %v", err)
	}
}

type profile struct {
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
}

// TestSetDoesNotAliasTheCallersValue: changing a value after Set does not
// change what reads in this process return.
func TestSetDoesNotAliasTheCallersValue(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	profiles, _ := tiered.NewCache[profile](e.client, "profile")
	p := profile{Tags: []string{"a"}, Attrs: map[string]string{"k": "v"}}
	if err := profiles.Set(ctx, "1", p); err != nil {
		t.Fatal(err)
	}
	p.Tags[0], p.Attrs["k"] = "changed", "changed"
	eventually(t, 2*time.Second, func() error {
		hits := e.client.Stats().Caches
		_ = hits
		got, err := profiles.Get(ctx, "1")
		if err != nil {
			return err
		}
		if got.Tags[0] != "a" || got.Attrs["k"] != "v" {
			t.Fatalf("Get after the caller changed its value = %+v", got)
		}
		if cacheStats(e.client, "profile").HitsL1 == 0 {
			return errors.New("not served in-process yet")
		}
		return nil
	})
}

// TestPanicErrorUnwrapsTheValue: a loader that panics with an error is
// both ErrLoaderPanic and that error.
func TestPanicErrorUnwrapsTheValue(t *testing.T) {
	_, users := l1Only(t)
	_, err := users.Fetch(context.Background(), "1", func(context.Context, string) (User, error) { panic(io.EOF) })
	var pe *tiered.PanicError
	if !errors.Is(err, tiered.ErrLoaderPanic) || !errors.Is(err, io.EOF) || !errors.As(err, &pe) {
		t.Fatalf("Fetch after panic(io.EOF) = %v", err)
	}
}

// roundTrips counts the round trips a client makes to Redis for the cache,
// leaving out connection handshakes (HELLO, CLIENT) and the bus's health
// checks (INFO).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func overhead(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "info":
		return true
	}
	return false
}

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !overhead(cmd) {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if !overhead(c) {
				r.n.Add(1)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// TestRoundTrips: a cold Fetch costs two round trips (read-or-lease, then
// the fill), a Redis hit one.
func TestRoundTrips(t *testing.T) {
	srv := redistest.Shared(t)
	var rt roundTrips
	rdb := srv.Client(t)
	rdb.AddHook(&rt)
	e := newEnv(t, tiered.Options{Redis: rdb})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	load := func(_ context.Context, id string) (User, error) { return User{ID: id}, nil }
	before := rt.n.Load()
	if _, err := e.users.Fetch(ctx, "cold", load); err != nil {
		t.Fatal(err)
	}
	if n := rt.n.Load() - before; n != 2 {
		t.Fatalf("a cold Fetch took %d round trips, want 2", n)
	}
	if _, err := peer.users.Fetch(ctx, "hit", load); err != nil {
		t.Fatal(err)
	}
	before = rt.n.Load()
	if _, err := e.users.Fetch(ctx, "hit", load); err != nil {
		t.Fatal(err)
	}
	if n := rt.n.Load() - before; n != 1 {
		t.Fatalf("a Redis hit took %d round trips, want 1", n)
	}
}

type withHidden struct {
	Name   string `json:"name"`
	hidden []string
}

// TestCopiesShareNothingWritable: the in-process copy of a Set value is
// independent of the caller's, however deep, for a type reflection can
// copy and for one it cannot (an unexported slice: decoded from Redis).
func TestCopiesShareNothingWritable(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	type deep struct {
		Tags  []string
		Attrs map[string][]int
		Next  *profile
		Arr   [2][]byte
	}
	deeps, _ := tiered.NewCache[deep](e.client, "deep")
	v := deep{Tags: []string{"a"}, Attrs: map[string][]int{"k": {1}}, Next: &profile{Tags: []string{"n"}}, Arr: [2][]byte{{1}, {2}}}
	if err := deeps.Set(ctx, "1", v); err != nil {
		t.Fatal(err)
	}
	v.Tags[0], v.Attrs["k"][0], v.Next.Tags[0], v.Arr[1][0] = "x", 9, "x", 9
	eventually(t, 2*time.Second, func() error {
		hits := cacheStats(e.client, "deep").HitsL1
		got, err := deeps.Get(ctx, "1")
		if err != nil {
			return err
		}
		if got.Tags[0] != "a" || got.Attrs["k"][0] != 1 || got.Next.Tags[0] != "n" || got.Arr[1][0] != 2 {
			t.Fatalf("the caller's changes reached the cache: %+v", got)
		}
		if cacheStats(e.client, "deep").HitsL1 == hits {
			return errors.New("not served in-process yet")
		}
		return nil
	})
	hidden, _ := tiered.NewCache[withHidden](e.client, "hidden")
	h := withHidden{Name: "n", hidden: []string{"a"}}
	if err := hidden.Set(ctx, "1", h); err != nil {
		t.Fatal(err)
	}
	h.hidden[0] = "x"
	if got, err := hidden.Get(ctx, "1"); err != nil || got.Name != "n" || got.hidden != nil {
		t.Fatalf("Get = %+v, %v; want a copy decoded from Redis", got, err)
	}
}
