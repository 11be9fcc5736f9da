// End-to-end tests: several Clients, each standing for a separate process
// with its own Redis connections, sharing one real Redis.
package tieredcache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type User struct {
	ID    string   `json:"id"`
	Email string   `json:"email"`
	Orgs  []string `json:"orgs,omitempty"`
}

// TestStampedeLoadsOnce sends 200 concurrent callers on each of 3 instances
// at one cold key with a 50 ms loader: singleflight collapses each
// instance's callers, the Redis lease collapses the instances.
func TestStampedeLoadsOnce(t *testing.T) { forEachTopology(t, testStampedeLoadsOnce) }

func testStampedeLoadsOnce(t *testing.T, topo topology) {
	const perInstance = 200
	f := newFleet(t, topo, 3)
	var loads atomic.Int64
	load := func(ctx context.Context, _ string) (User, error) {
		loads.Add(1)
		time.Sleep(50 * time.Millisecond)
		return User{ID: "cold", Email: "cold@example.com"}, nil
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, perInstance*len(f.instances))
	for _, in := range f.instances {
		for range perInstance {
			wg.Go(func() {
				<-start
				u, err := in.users.Fetch(context.Background(), "cold", load)
				if err == nil && u.Email != "cold@example.com" {
					err = fmt.Errorf("got %+v", u)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("loader called %d times across %d instances x %d callers, want 1", n, len(f.instances), perInstance)
	}
	var waited, coalesced uint64
	for _, in := range f.instances {
		cs := in.client.Stats().Caches[0]
		waited += cs.LeasesWaited
		coalesced += cs.Coalesced
	}
	t.Logf("loader calls: 1; callers coalesced in-process: %d; lease waits: %d", coalesced, waited)
}

// TestWriteInvalidatesOtherInstances checks that after Set or Delete on one
// instance, the others stop serving their in-process copy.
func TestWriteInvalidatesOtherInstances(t *testing.T) {
	forEachTopology(t, testWriteInvalidatesOtherInstances)
}

func testWriteInvalidatesOtherInstances(t *testing.T, topo topology) {
	f := newFleet(t, topo, 3)
	ctx := context.Background()
	a, b, c := f.instances[0], f.instances[1], f.instances[2]
	if err := a.users.Set(ctx, "42", User{ID: "42", Email: "old@example.com"}); err != nil {
		t.Fatal(err)
	}
	// Every instance reads the old value and keeps it in-process.
	for _, in := range []*instance{b, c} {
		eventually(t, 2*time.Second, in.name+" serves the old value from L1", func() bool {
			u, err := in.users.Get(ctx, "42")
			return err == nil && u.Email == "old@example.com" && in.client.Stats().Caches[0].HitsL1 > 0
		})
	}

	if err := a.users.Set(ctx, "42", User{ID: "42", Email: "new@example.com"}); err != nil {
		t.Fatal(err)
	}
	if u, err := a.users.Get(ctx, "42"); err != nil || u.Email != "new@example.com" {
		t.Fatalf("writer reads %+v, %v: no read-your-writes", u, err)
	}
	for _, in := range []*instance{b, c} {
		eventually(t, 2*time.Second, in.name+" sees the Set", func() bool {
			u, err := in.users.Get(ctx, "42")
			return err == nil && u.Email == "new@example.com"
		})
	}

	if err := b.users.Delete(ctx, "42"); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{a, c} {
		eventually(t, 2*time.Second, in.name+" sees the Delete", func() bool {
			_, err := in.users.Get(ctx, "42")
			return errors.Is(err, tiered.ErrNotFound)
		})
	}
	for _, in := range f.instances {
		if st := in.client.Stats(); in != a && st.InvalidationsReceived == 0 {
			t.Errorf("%s received no invalidation", in.name)
		}
	}
}

// TestDeleteDuringLoadCachesNothing deletes the key while another
// instance's loader is running: the loaded value is returned to its caller
// but cached nowhere.
func TestDeleteDuringLoadCachesNothing(t *testing.T) {
	forEachTopology(t, testDeleteDuringLoadCachesNothing)
}

func testDeleteDuringLoadCachesNothing(t *testing.T, topo topology) {
	f := newFleet(t, topo, 3)
	ctx := context.Background()
	a, b, c := f.instances[0], f.instances[1], f.instances[2]
	proceed, done := gatedFetch(a, "7", User{ID: "7", Email: "read-before-delete@example.com"})
	if err := b.users.Delete(ctx, "7"); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	r := <-done
	if r.err != nil || r.u.Email != "read-before-delete@example.com" {
		t.Fatalf("Fetch = %+v, %v", r.u, r.err)
	}
	if n := f.admin.Exists(ctx, f.key(t, "7")).Val(); n != 0 {
		t.Fatal("the value loaded before the Delete was written to Redis")
	}
	for _, in := range []*instance{a, b, c} {
		if u, err := in.users.Get(ctx, "7"); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("%s: Get after Delete = %+v, %v; want ErrNotFound", in.name, u, err)
		}
	}
	// Refused by the lease check in Redis, or before it, by the delete's
	// invalidation having reached the loading process.
	if st := a.client.Stats().Caches[0]; st.LeaseLost+st.FillsRefused != 1 {
		t.Fatalf("LeaseLost %d + FillsRefused %d, want 1", st.LeaseLost, st.FillsRefused)
	}
}

// TestSetDuringLoadWins writes the key while a load is under way: the
// write survives, the load's result is not cached over it.
func TestSetDuringLoadWins(t *testing.T) { forEachTopology(t, testSetDuringLoadWins) }

func testSetDuringLoadWins(t *testing.T, topo topology) {
	f := newFleet(t, topo, 2)
	ctx := context.Background()
	a, b := f.instances[0], f.instances[1]
	proceed, done := gatedFetch(a, "8", User{ID: "8", Email: "stale@example.com"})
	if err := b.users.Set(ctx, "8", User{ID: "8", Email: "written@example.com"}); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	for _, in := range f.instances {
		eventually(t, 2*time.Second, in.name+" serves the write", func() bool {
			u, err := in.users.Get(ctx, "8")
			return err == nil && u.Email == "written@example.com"
		})
	}
}

// TestSubscriberKillFlushesL1 simulates an invalidation lost while the
// subscription was down: the instance must flush its in-process tier when
// it resubscribes, rather than keep serving what it had. It runs in pub/sub
// mode, where a raw write is an invalidation the instance never hears of.
func TestSubscriberKillFlushesL1(t *testing.T) { forEachTopology(t, testSubscriberKillFlushesL1) }

func testSubscriberKillFlushesL1(t *testing.T, topo topology) {
	f := newFleetWith(t, topo, 1, tiered.Options{PubSubOnly: true})
	ctx := context.Background()
	a := f.instances[0]
	if err := a.users.Set(ctx, "9", User{ID: "9", Email: "old@example.com"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "old value in L1", func() bool {
		before := a.client.Stats().Caches[0].HitsL1
		u, err := a.users.Get(ctx, "9")
		return err == nil && u.Email == "old@example.com" && a.client.Stats().Caches[0].HitsL1 > before
	})
	// A write whose invalidation never reaches the instance.
	raw, _ := json.Marshal(User{ID: "9", Email: "new@example.com"})
	if err := f.admin.Set(ctx, f.key(t, "9"), raw, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if u, _ := a.users.Get(ctx, "9"); u.Email != "old@example.com" {
		t.Fatalf("before the kill the instance should still serve its L1 copy, got %+v", u)
	}
	killPubSub(t, f.admin, a.name)
	eventually(t, 5*time.Second, "flush after resubscribing", func() bool {
		st := a.client.Stats()
		return st.FlushesGap >= 1 && st.RedisUp
	})
	if u, err := a.users.Get(ctx, "9"); err != nil || u.Email != "new@example.com" {
		t.Fatalf("after the gap Get = %+v, %v; want the value in Redis", u, err)
	}
}

// TestTenantsStaySeparate stores one id under two tenants.
func TestTenantsStaySeparate(t *testing.T) { forEachTopology(t, testTenantsStaySeparate) }

func testTenantsStaySeparate(t *testing.T, topo topology) {
	f := newFleet(t, topo, 2, keys.EnforceTenantIsolation())
	a, b := f.instances[0], f.instances[1]
	orgA := keys.WithTenant(context.Background(), "org-a")
	orgB := keys.WithTenant(context.Background(), "org-b")
	if err := a.users.Set(orgA, "settings", User{ID: "settings", Email: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := a.users.Set(orgB, "settings", User{ID: "settings", Email: "b@example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{a, b} {
		ua, errA := in.users.Get(orgA, "settings")
		ub, errB := in.users.Get(orgB, "settings")
		if errA != nil || errB != nil || ua.Email != "a@example.com" || ub.Email != "b@example.com" {
			t.Fatalf("%s: org-a %+v %v, org-b %+v %v", in.name, ua, errA, ub, errB)
		}
	}
	if _, err := b.users.Get(keys.WithTenant(context.Background(), "org-c"), "settings"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("third tenant: %v, want ErrNotFound", err)
	}
	if _, err := b.users.Get(context.Background(), "settings"); !errors.Is(err, keys.ErrTenantRequired) {
		t.Fatalf("no tenant: %v, want ErrTenantRequired", err)
	}
	if _, err := b.users.Fetch(context.Background(), "settings", func(context.Context, string) (User, error) {
		t.Error("loader called without a tenant")
		return User{}, nil
	}); !errors.Is(err, keys.ErrTenantRequired) {
		t.Fatalf("Fetch without tenant: %v, want ErrTenantRequired", err)
	}
	if _, err := b.users.Get(keys.WithTenant(context.Background(), "org-a:user"), "settings"); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("forged tenant: %v, want ErrInvalidKey", err)
	}
	if err := f.admin.Get(context.Background(), f.prefix+":tenant-org-b:user:settings:v1").Err(); err != nil {
		t.Fatalf("org-b's key is not where the layout says: %v", err)
	}
}

// TestInteropWithPlainRedisJSON reads what a bare client (the Python
// template) wrote, and writes what a bare client can read.
func TestInteropWithPlainRedisJSON(t *testing.T) { forEachTopology(t, testInteropWithPlainRedisJSON) }

func testInteropWithPlainRedisJSON(t *testing.T, topo topology) {
	kb, err := keys.New("fastapi_template")
	if err != nil {
		t.Fatal(err)
	}
	rdb := topo.client(t, redistest.Prefix(t))
	client, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, Channel: redistest.Prefix(t) + ":inv"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache[User](client, "user")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := "uuid-456-" + redistest.Prefix(t)
	seedKey := "fastapi_template:tenant-global:user:" + id + ":v1"
	t.Cleanup(func() { rdb.Del(context.Background(), seedKey, seedKey+":with_memberships") })

	// As Python's json.dumps writes it, spaces and all.
	pyJSON := `{"id": "` + id + `", "email": "py@example.com", "orgs": ["org-1"]}`
	if err := rdb.Set(ctx, seedKey, pyJSON, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	u, err := users.Get(ctx, id)
	if err != nil || u.Email != "py@example.com" || len(u.Orgs) != 1 {
		t.Fatalf("Get of the seed's value = %+v, %v", u, err)
	}

	want := User{ID: id, Email: "go@example.com"}
	if err := users.Set(ctx, id, want, tiered.Suffix("with_memberships")); err != nil {
		t.Fatal(err)
	}
	raw, err := rdb.Get(ctx, seedKey+":with_memberships").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var got User
	if err := json.Unmarshal(raw, &got); err != nil || got.ID != id || got.Email != "go@example.com" {
		t.Fatalf("bare client decodes %q as %+v, %v", raw, got, err)
	}
	if !json.Valid(raw) || raw[0] != '{' {
		t.Fatalf("stored bytes are not a plain JSON object: %q", raw)
	}
}

// TestL1OnlyMode runs without Redis.
func TestL1OnlyMode(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client, err := tiered.New(tiered.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache[User](client, "user")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var loads atomic.Int64
	load := func(context.Context, string) (User, error) {
		loads.Add(1)
		return User{ID: "1", Email: "l1@example.com"}, nil
	}
	for range 3 {
		if u, err := users.Fetch(ctx, "1", load); err != nil || u.Email != "l1@example.com" {
			t.Fatalf("Fetch = %+v, %v", u, err)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("loads = %d, want 1", n)
	}
	if err := users.Set(ctx, "2", User{ID: "2"}); err != nil {
		t.Fatal(err)
	}
	if u, err := users.Get(ctx, "2"); err != nil || u.ID != "2" {
		t.Fatalf("Get after Set = %+v, %v", u, err)
	}
	if err := users.Delete(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, "2"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if client.Stats().RedisUp {
		t.Fatal("RedisUp() in L1-only mode")
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Get(ctx, "1"); !errors.Is(err, tiered.ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
}

// TestBatchesAcrossSlots runs the batch operations over ids that land in
// many hash slots: on a cluster a multi-key MGET or pipeline of them fails
// with CROSSSLOT unless each key goes to its own node.
func TestBatchesAcrossSlots(t *testing.T) { forEachTopology(t, testBatchesAcrossSlots) }

func testBatchesAcrossSlots(t *testing.T, topo topology) {
	f := newFleet(t, topo, 2)
	ctx := context.Background()
	a, b := f.instances[0], f.instances[1]
	ids := make([]string, 60)
	warm := map[string]User{}
	for i := range ids {
		ids[i] = fmt.Sprint("id-", i)
		if i%3 == 0 {
			warm[ids[i]] = User{ID: ids[i], Email: "warmed"}
		}
	}
	// b holds a stale copy of one warmed id; Warm must invalidate it.
	if err := b.users.Set(ctx, "id-0", User{ID: "id-0", Email: "stale"}); err != nil {
		t.Fatal(err)
	}
	if err := a.users.Warm(ctx, warm); err != nil {
		t.Fatal(err)
	}
	var asked int
	got, err := b.users.FetchMany(ctx, ids, func(ctx context.Context, missing []string) (map[string]User, error) {
		asked = len(missing)
		out := map[string]User{}
		for _, id := range missing {
			out[id] = User{ID: id, Email: "loaded"}
		}
		return out, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) || asked != len(ids)-len(warm) {
		t.Fatalf("FetchMany returned %d values, loaded %d; want %d and %d", len(got), asked, len(ids), len(ids)-len(warm))
	}
	eventually(t, 2*time.Second, "b drops its stale copy after the Warm", func() bool {
		u, err := b.users.Get(ctx, "id-0")
		return err == nil && u.Email == "warmed"
	})
	// Everything is now in Redis: a second batch loads nothing.
	again, err := a.users.FetchMany(ctx, ids, func(context.Context, []string) (map[string]User, error) {
		t.Error("loader called for cached ids")
		return nil, nil
	})
	if err != nil || len(again) != len(ids) {
		t.Fatalf("second FetchMany: %d values, %v", len(again), err)
	}
	if cc, ok := f.admin.(*redis.ClusterClient); ok {
		k := f.key(t, "id-7")
		vs, err1 := cc.ClusterKeySlot(ctx, k).Result()
		ls, err2 := cc.ClusterKeySlot(ctx, "{"+k+"}:lease").Result()
		if err1 != nil || err2 != nil || vs != ls {
			t.Fatalf("value slot %d (%v), lease slot %d (%v)", vs, err1, ls, err2)
		}
	}
}
