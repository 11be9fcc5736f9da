package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestNewValidatesOptions(t *testing.T) {
	for _, o := range []tiered.Options{
		{TTL: -1}, {L1TTL: -1}, {DegradedTTL: -1}, {LoadTimeout: -1}, {LeaseTTL: -1},
		{LeaseWait: -1}, {OpTimeout: -1}, {HealthCheckInterval: -1}, {StartupWait: -1},
		{MaxValueBytes: -1},
	} {
		if c, err := tiered.New(o); err == nil {
			c.Close()
			t.Errorf("New(%+v) succeeded", o)
		} else if !strings.HasPrefix(err.Error(), "tiered: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}

func TestNewCacheValidates(t *testing.T) {
	c, _ := l1Only(t)
	if _, err := tiered.NewCache[User](nil, "user"); err == nil {
		t.Error("NewCache(nil) succeeded")
	}
	if _, err := tiered.NewCache[User](c, "us:er"); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("bad resource: %v", err)
	}
	for _, o := range []tiered.Option{
		tiered.TTL(0), tiered.L1TTL(-time.Second), tiered.Version(""), tiered.Codec(nil),
	} {
		if _, err := tiered.NewCache[User](c, "user", o); err == nil {
			t.Error("NewCache with an invalid option succeeded")
		}
	}
}

func TestGetServesBothTiers(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	if _, err := e.users.Get(ctx, "1"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
	}
	if err := e.users.Set(ctx, "1", User{ID: "1", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if u := awaitL1(t, e.client, e.users, ctx, "1"); u.Email != "a@example.com" {
		t.Fatalf("L1 served %+v", u)
	}
	// A second process's view: nothing in its L1, so Redis serves.
	other := newEnv(t, tiered.Options{Keys: e.kb})
	u, err := other.users.Get(ctx, "1")
	if err != nil || u.Email != "a@example.com" {
		t.Fatalf("Get from L2 = %+v, %v", u, err)
	}
	if st := cacheStats(other.client, "user"); st.HitsL2 != 1 || st.HitsL1 != 0 {
		t.Fatalf("stats after an L2 read: %+v", st)
	}
	if st := cacheStats(e.client, "user"); st.Misses != 1 {
		t.Fatalf("misses = %d, want 1", st.Misses)
	}
}

func TestCallOptionsShapeTheKey(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	cases := []struct {
		opts []tiered.Option
		key  string
	}{
		{nil, e.key(t, ctx, "u1")},
		{[]tiered.Option{tiered.Suffix("with_memberships")}, e.key(t, ctx, "u1", keys.Suffix("with_memberships"))},
		{[]tiered.Option{tiered.Version("v2")}, e.key(t, ctx, "u1", keys.Version("v2"))},
		{[]tiered.Option{tiered.Tenant("org-9")}, e.key(t, ctx, "u1", keys.Tenant("org-9"))},
	}
	for i, tc := range cases {
		k, err := e.users.Key(ctx, "u1", tc.opts...)
		if err != nil || k != tc.key {
			t.Fatalf("Key = %q, %v; want %q", k, err, tc.key)
		}
		if err := e.users.Set(ctx, "u1", User{ID: fmt.Sprint(i)}, tc.opts...); err != nil {
			t.Fatal(err)
		}
		if got := e.rdb.Get(ctx, tc.key).Val(); !strings.Contains(got, fmt.Sprintf(`"id":"%d"`, i)) {
			t.Fatalf("key %s holds %q", tc.key, got)
		}
	}
	if _, err := e.users.Get(ctx, "u1", tiered.Version("")); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("empty version: %v", err)
	}
	if _, err := e.users.Get(ctx, "u1", tiered.TTL(0)); err == nil {
		t.Fatal("TTL(0) accepted")
	}
}

func TestOptionsThatDoNotApplyAreRefused(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	load := func(context.Context, string) (User, error) { return User{}, nil }
	for name, err := range map[string]error{
		"Delete with TTL":      e.users.Delete(ctx, "u1", tiered.TTL(time.Second)),
		"Set with Reload":      e.users.Set(ctx, "u1", User{}, tiered.Reload()),
		"Warm with NoL1":       e.users.Warm(ctx, map[string]User{"u1": {}}, tiered.NoL1()),
		"Get with Reload":      second(e.users.Get(ctx, "u1", tiered.Reload())),
		"Get with TTL":         second(e.users.Get(ctx, "u1", tiered.TTL(time.Second))),
		"Fetch with Codec":     second(e.users.Fetch(ctx, "u1", load, tiered.Codec(nil))),
		"a zero Option":        second(e.users.Get(ctx, "u1", tiered.Option{})),
		"NewCache with Tenant": second(tiered.NewCache[User](e.client, "user", tiered.Tenant("org-1"))),
		"NewCache with Reload": second(tiered.NewCache[User](e.client, "user", tiered.Reload())),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := tiered.NewCache[User](e.client, "user", tiered.Codec(nil)); err == nil {
		t.Error("NewCache with Codec(nil): accepted")
	}
}

func second[T any](_ T, err error) error { return err }

// TTLs are jittered: each value's is shortened by up to TTLJitter (10%).
func TestTTLs(t *testing.T) {
	e := newEnv(t, tiered.Options{TTL: time.Hour}, tiered.TTL(10*time.Minute))
	ctx := context.Background()
	if err := e.users.Set(ctx, "a", User{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if ttl := e.rdb.PTTL(ctx, e.key(t, ctx, "a")).Val(); ttl < 8*time.Minute || ttl > 10*time.Minute {
		t.Fatalf("cache TTL gave PTTL %v", ttl)
	}
	if err := e.users.Set(ctx, "b", User{ID: "b"}, tiered.TTL(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ttl := e.rdb.PTTL(ctx, e.key(t, ctx, "b")).Val(); ttl < 25*time.Second || ttl > 30*time.Second {
		t.Fatalf("call TTL gave PTTL %v", ttl)
	}
	if _, err := e.users.Fetch(ctx, "c", func(context.Context, string) (User, error) { return User{ID: "c"}, nil }, tiered.TTL(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ttl := e.rdb.PTTL(ctx, e.key(t, ctx, "c")).Val(); ttl < 17*time.Second || ttl > 20*time.Second {
		t.Fatalf("Fetch TTL gave PTTL %v", ttl)
	}
}

func TestCacheVersion(t *testing.T) {
	e := newEnv(t, tiered.Options{}, tiered.Version("v2"))
	ctx := context.Background()
	k, err := e.users.Key(ctx, "1")
	if err != nil || !strings.HasSuffix(k, ":user:1:v2") {
		t.Fatalf("Key = %q, %v", k, err)
	}
}

func TestRefreshReadsPastL1(t *testing.T) {
	// Pub/sub mode: a raw write is a change the cache does not hear of.
	e := newEnv(t, tiered.Options{PubSubOnly: true})
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1", Email: "old"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, e.client, e.users, ctx, "1")
	// Changed behind the cache's back (no invalidation).
	e.rdb.Set(ctx, e.key(t, ctx, "1"), `{"id":"1","email":"new"}`, time.Minute)
	if u, _ := e.users.Get(ctx, "1"); u.Email != "old" {
		t.Fatalf("plain Get = %+v, want the L1 copy", u)
	}
	if u, err := e.users.Get(ctx, "1", tiered.NoL1()); err != nil || u.Email != "new" {
		t.Fatalf("Get(Refresh) = %+v, %v", u, err)
	}
	loads := 0
	u, err := e.users.Fetch(ctx, "1", func(context.Context, string) (User, error) {
		loads++
		return User{ID: "1", Email: "fresh"}, nil
	}, tiered.Reload())
	if err != nil || u.Email != "fresh" || loads != 1 {
		t.Fatalf("Fetch(Refresh) = %+v, %v, loads %d", u, err, loads)
	}
	if got := e.rdb.Get(ctx, e.key(t, ctx, "1")).Val(); !strings.Contains(got, "fresh") {
		t.Fatalf("Refresh did not store: %q", got)
	}
}

func TestRefreshInvalidatesPeers(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1", Email: "old"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, peer.client, peer.users, ctx, "1")
	if _, err := e.users.Fetch(ctx, "1", func(context.Context, string) (User, error) {
		return User{ID: "1", Email: "fresh"}, nil
	}, tiered.Reload()); err != nil {
		t.Fatal(err)
	}
	awaitEmail(t, peer.users, ctx, "1", "fresh", "a refresh elsewhere")
}

func TestWithoutL1(t *testing.T) {
	e := newEnv(t, tiered.Options{}, tiered.NoL1())
	ctx := context.Background()
	if err := e.users.Set(ctx, "1", User{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := e.users.Get(ctx, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if st := cacheStats(e.client, "user"); st.HitsL1 != 0 || st.HitsL2 != 3 {
		t.Fatalf("stats = %+v; want every read from Redis", st)
	}
}

func TestTooLarge(t *testing.T) {
	e := newEnv(t, tiered.Options{MaxValueBytes: 64})
	ctx := context.Background()
	big := User{ID: "1", Email: strings.Repeat("x", 100)}
	if err := e.users.Set(ctx, "1", big); !errors.Is(err, tiered.ErrTooLarge) {
		t.Fatalf("Set of a large value = %v, want ErrTooLarge", err)
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "1")).Val(); n != 0 {
		t.Fatal("large value written")
	}
	// Fetch still returns a large loaded value; it just is not cached.
	u, err := e.users.Fetch(ctx, "2", func(context.Context, string) (User, error) { return big, nil })
	if err != nil || u.Email != big.Email {
		t.Fatalf("Fetch of a large value = %v", err)
	}
	if n := e.rdb.Exists(ctx, e.key(t, ctx, "2")).Val(); n != 0 {
		t.Fatal("large loaded value written")
	}
	if st := cacheStats(e.client, "user"); st.TooLarge != 2 {
		t.Fatalf("TooLarge = %d, want 2", st.TooLarge)
	}
}

// TestUndecodableValueIsLeftInPlace: a value this cache cannot decode
// (corrupt bytes, or another service's encoding) is a miss, counted and
// logged, and stays in Redis; a Fetch serves its loaded value without
// overwriting it.
func TestUndecodableValueIsLeftInPlace(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	k := e.key(t, ctx, "1")
	e.rdb.Set(ctx, k, "\x00not json{", time.Minute)
	if _, err := e.users.Get(ctx, "1"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of corrupt bytes = %v, want ErrNotFound", err)
	}
	if got := e.rdb.Get(ctx, k).Val(); got != "\x00not json{" {
		t.Fatalf("undecodable value replaced by %q", got)
	}
	theirs := `{"id":1,"email":"theirs"}` // an id Go cannot read as a string
	e.rdb.Set(ctx, k, theirs, time.Minute)
	u, err := e.users.Fetch(ctx, "1", func(context.Context, string) (User, error) { return User{ID: "1", Email: "good"}, nil })
	if err != nil || u.Email != "good" {
		t.Fatalf("Fetch over an undecodable value = %+v, %v", u, err)
	}
	if got := e.rdb.Get(ctx, k).Val(); got != theirs {
		t.Fatalf("Redis holds %q after the load, want the neighbour's value", got)
	}
	st := cacheStats(e.client, "user")
	if st.DecodeErrors < 3 || st.FillsRefused != 1 {
		t.Fatalf("DecodeErrors = %d (want >= 3), FillsRefused = %d (want 1)", st.DecodeErrors, st.FillsRefused)
	}
	if !e.logs.Contains("does not decode") {
		t.Fatal("no log line for the undecodable value")
	}
}

func TestClosedClient(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	if err := e.client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	load := func(context.Context, string) (User, error) { return User{}, nil }
	checks := map[string]error{}
	_, checks["Get"] = e.users.Get(ctx, "1")
	_, checks["Fetch"] = e.users.Fetch(ctx, "1", load)
	checks["Set"] = e.users.Set(ctx, "1", User{})
	checks["Delete"] = e.users.Delete(ctx, "1")
	checks["Warm"] = e.users.Warm(ctx, map[string]User{"1": {}})
	_, checks["FetchMany"] = e.users.FetchMany(ctx, []string{"1"}, func(context.Context, []string) (map[string]User, error) { return nil, nil })
	_, checks["NewCache"] = tiered.NewCache[User](e.client, "other")
	for op, err := range checks {
		if !errors.Is(err, tiered.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
}

func TestWarm(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	peer := newEnv(t, tiered.Options{Keys: e.kb})
	ctx := context.Background()
	const n = 2500 // thirteen batches
	values := make(map[string]User, n)
	for i := range n {
		id := fmt.Sprint(i)
		values[id] = User{ID: id}
	}
	// The peer holds a stale copy of one key, which Warm must invalidate.
	if err := peer.users.Set(ctx, "7", User{ID: "7", Email: "stale"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, peer.client, peer.users, ctx, "7")
	if err := e.users.Warm(ctx, values, tiered.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := e.rdb.Exists(ctx, e.key(t, ctx, "0"), e.key(t, ctx, "2499")).Val(); got != 2 {
		t.Fatalf("%d of 2 sampled keys in Redis", got)
	}
	if ttl := e.rdb.PTTL(ctx, e.key(t, ctx, "1234")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v", ttl)
	}
	awaitEmail(t, peer.users, ctx, "7", "", "Warm")
	// One message a batch, unless Redis tracks the keys itself.
	want := uint64(13)
	if e.client.Stats().InvalidationMode == "tracking" {
		want = 0
	}
	if st := e.client.Stats(); st.InvalidationsPublished != want {
		t.Fatalf("published %d invalidation messages, want %d", st.InvalidationsPublished, want)
	}
	awaitL1(t, e.client, e.users, ctx, "42")
}

func TestL1OnlyReadYourWrites(t *testing.T) {
	_, users := l1Only(t)
	ctx := context.Background()
	for i := range 200 {
		id := fmt.Sprint(i)
		if err := users.Set(ctx, id, User{ID: id}); err != nil {
			t.Fatal(err)
		}
		if u, err := users.Get(ctx, id); err != nil || u.ID != id {
			t.Fatalf("Get right after Set(%s) = %+v, %v", id, u, err)
		}
	}
	if err := users.Warm(ctx, map[string]User{"w": {ID: "w"}}); err != nil {
		t.Fatal(err)
	}
	if u, err := users.Get(ctx, "w"); err != nil || u.ID != "w" {
		t.Fatalf("Get after Warm = %+v, %v", u, err)
	}
}

// TestWarmL1OnlyKeepsEveryValue warms more ids than there are stripes, so
// many share one: in L1-only mode every value must be readable afterwards.
func TestWarmL1OnlyKeepsEveryValue(t *testing.T) {
	_, users := l1Only(t)
	ctx := context.Background()
	values := make(map[string]User, 1000)
	for i := range 1000 {
		id := fmt.Sprint(i)
		values[id] = User{ID: id}
	}
	if err := users.Warm(ctx, values); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for id := range values {
		if _, err := users.Get(ctx, id); err != nil {
			missing++
		}
	}
	if missing != 0 {
		t.Fatalf("%d of 1000 warmed values unreadable", missing)
	}
}
