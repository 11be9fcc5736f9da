package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"app:tenant-global:user:1:v1", "{app:tenant-global:user:1:v1}:lease"},
		{"{app}:user:1", "{app}:user:1:lease"},
		{"a{}b", "{a{}b}:lease"},
	} {
		if got := lock.Key(tt.in); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func setup(t *testing.T) (*lock.Leaser, *redis.Client, string) {
	t.Helper()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	l, err := lock.New(rdb, lock.Config{TTL: 5 * time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return l, rdb, redistest.Prefix(t) + ":user:1"
}

func TestAcquireIsExclusive(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	le, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, lock.Key(key)).Val(); n != 1 {
		t.Fatal("no lease key in Redis")
	}
	if ttl := rdb.PTTL(ctx, lock.Key(key)).Val(); ttl <= 0 || ttl > 5*time.Second {
		t.Fatalf("lease PTTL = %v", ttl)
	}
	if _, err := l.Acquire(ctx, key); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("second Acquire = %v, want ErrHeld", err)
	}
	if err := le.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := le.Release(ctx); err != nil {
		t.Fatalf("releasing a released lease: %v", err)
	}
	le2, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = le2.Release(ctx)
}

func TestFillStoresWhileHeld(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, key+":bus")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	le, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := le.Fill(ctx, []byte(`"v"`), time.Minute, false, key+":bus", []byte("filled")); err != nil {
		t.Fatalf("Fill = %v", err)
	}
	if v := rdb.Get(ctx, key).Val(); v != `"v"` {
		t.Fatalf("value = %q", v)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("value PTTL = %v", ttl)
	}
	if n := rdb.Exists(ctx, lock.Key(key)).Val(); n != 0 {
		t.Fatal("lease not released by Fill")
	}
	noStage(t, rdb, key)
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "filled" {
		t.Fatalf("fill message %v, %v", m, err)
	}
}

// TestFillLosesToDelete is the lease guard: a write that removed the lease
// while the loader ran makes the loader's Fill store nothing.
func TestFillLosesToDelete(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	le, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, key, lock.Key(key)) // what a concurrent Delete does
	if err := le.Fill(ctx, []byte(`"stale"`), time.Minute, false, "", nil); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Fill after Delete = %v; want ErrLost", err)
	}
	noStage(t, rdb, key)
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("stale value stored")
	}
}

func TestFillLosesToNewLease(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	le, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, lock.Key(key))
	le2, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := le.Fill(ctx, []byte("1"), time.Minute, false, "", nil); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Fill with a superseded lease = %v", err)
	}
	if err := le2.Fill(ctx, []byte("2"), time.Minute, false, "", nil); err != nil {
		t.Fatalf("Fill with the current lease = %v", err)
	}
	if v := rdb.Get(ctx, key).Val(); v != "2" {
		t.Fatalf("value = %q", v)
	}
}

func TestAcquireOnDeadServer(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	l, err := lock.New(rdb, lock.Config{TTL: time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(context.Background(), "k")
	if err == nil || errors.Is(err, lock.ErrHeld) {
		t.Fatalf("Acquire on a dead server = %v; want an error other than ErrHeld", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := lock.New(nil, lock.Config{}); err == nil {
		t.Fatal("New with zero TTL succeeded")
	}
}

func TestAcquireManyFillMany(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	k1, k2, k3 := key+"a", key+"b", key+"c"
	held, err := l.Acquire(ctx, k2)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := l.AcquireMany(ctx, []string{k1, k2, k3})
	if err != nil {
		t.Fatal(err)
	}
	if leases[0] == nil || leases[1] != nil || leases[2] == nil {
		t.Fatalf("AcquireMany = %v, want [lease nil lease]", leases)
	}
	// A concurrent delete of k3 takes its lease away.
	rdb.Del(ctx, k3, lock.Key(k3))
	sub := rdb.Subscribe(ctx, key+":bus")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := l.FillMany(ctx, []lock.Fill{
		{Lease: leases[0], Value: []byte("1"), TTL: time.Minute},
		{Lease: leases[2], Value: []byte("3"), TTL: time.Minute},
	}, false, key+":bus", [][]byte{[]byte("filled")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != nil || !errors.Is(res[1], lock.ErrLost) {
		t.Fatalf("FillMany = %v, want [nil ErrLost]", res)
	}
	if v := rdb.Get(ctx, k1).Val(); v != "1" {
		t.Fatalf("k1 = %q", v)
	}
	if n := rdb.Exists(ctx, k3).Val(); n != 0 {
		t.Fatal("k3 stored despite the lost lease")
	}
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "filled" {
		t.Fatalf("fill message %v, %v", m, err)
	}
	// A batch lease guards a single one and the other way round.
	if _, err := l.Acquire(ctx, k2); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("Acquire of a held lease = %v", err)
	}
	if err := l.ReleaseMany(ctx, []*lock.Lease{held}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, lock.Key(k2)).Val(); n != 0 {
		t.Fatal("ReleaseMany left the lease")
	}
	if out, err := l.AcquireMany(ctx, nil); out != nil || err != nil {
		t.Fatalf("AcquireMany(nil) = %v, %v", out, err)
	}
}

// noStage fails if a staging key of key was left behind.
func noStage(t *testing.T, rdb *redis.Client, key string) {
	t.Helper()
	if ks := rdb.Keys(context.Background(), "{"+key+"}:lease:stage:*").Val(); len(ks) != 0 {
		t.Fatalf("staging keys left behind: %v", ks)
	}
}

// TestFillNeverOverwritesAnotherWriter: a writer that knows nothing of
// leases (another service's SETEX) wrote the key while the load ran; the
// fill keeps its value.
func TestFillNeverOverwritesAnotherWriter(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	le, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 SETEX is what the Python template writes: the test issues that command
	rdb.SetEx(ctx, key, `"theirs"`, time.Minute)
	if err := le.Fill(ctx, []byte(`"ours"`), time.Minute, false, "", nil); !errors.Is(err, lock.ErrExists) {
		t.Fatalf("Fill over another writer's value = %v; want ErrExists", err)
	}
	if v := rdb.Get(ctx, key).Val(); v != `"theirs"` {
		t.Fatalf("value = %q", v)
	}
	if n := rdb.Exists(ctx, lock.Key(key)).Val(); n != 0 {
		t.Fatal("lease kept")
	}
	noStage(t, rdb, key)
}

// TestTakeRevokesAnOlderLease: a refresh takes the lease from a load that
// started before it; the older load's fill then stores nothing, and the
// refresh's value replaces what is there.
func TestTakeRevokesAnOlderLease(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	old, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, key, "0", time.Minute)
	fresh, err := l.Take(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Fill(ctx, []byte("2"), 0, true, "", nil); err != nil {
		t.Fatalf("refresh fill = %v", err)
	}
	if err := old.Fill(ctx, []byte("1"), time.Minute, true, "", nil); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("older fill = %v; want ErrLost", err)
	}
	if v := rdb.Get(ctx, key).Val(); v != "2" {
		t.Fatalf("value = %q", v)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl != -1 {
		t.Fatalf("a fill without TTL left PTTL %v", ttl)
	}
}

func TestClaimIsExclusiveAndFenced(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	rdb.Set(ctx, key, "old", time.Minute)
	le, err := l.Claim(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(ctx, key); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("second Claim = %v; want ErrHeld", err)
	}
	if _, err := l.Acquire(ctx, key); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("Acquire under a claim = %v; want ErrHeld", err)
	}
	if err := le.Fill(ctx, []byte("new"), time.Minute, true, "", nil); err != nil {
		t.Fatalf("refresh fill = %v", err)
	}
	if v := rdb.Get(ctx, key).Val(); v != "new" {
		t.Fatalf("value = %q", v)
	}

	// Another writer, one that takes no lease, changes the value during
	// the refresh: the refresh stores nothing.
	if le, err = l.Claim(ctx, key); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, key, "python", time.Minute)
	if err := le.Fill(ctx, []byte("refreshed"), time.Minute, true, "", nil); !errors.Is(err, lock.ErrExists) {
		t.Fatalf("fill over another writer = %v; want ErrExists", err)
	}
	if v := rdb.Get(ctx, key).Val(); v != "python" {
		t.Fatalf("value = %q", v)
	}
}

// TestFillAfterScriptFlush: Redis forgot the script (a restart, a
// failover); the fill still runs.
func TestFillAfterScriptFlush(t *testing.T) {
	rdb := redistest.Private(t).Client(t)
	l, err := lock.New(rdb, lock.Config{TTL: 5 * time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		rdb.ScriptFlush(ctx)
		le, err := l.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if err := le.Fill(ctx, []byte("1"), time.Minute, true, "", nil); err != nil {
			t.Fatalf("fill %d after SCRIPT FLUSH: %v", i, err)
		}
	}
}

// TestTakenFillKeepsAnotherWritersValue: a refresh took the lease over v0;
// another service wrote v1 while it loaded; the refresh's fill keeps v1.
func TestTakenFillKeepsAnotherWritersValue(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	for _, before := range []string{"v0", ""} {
		rdb.Del(ctx, key)
		if before != "" {
			rdb.Set(ctx, key, before, time.Minute)
		}
		le, err := l.Take(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 SETEX is what the Python template writes: the test issues that command
		rdb.SetEx(ctx, key, "theirs", time.Minute)
		if err := le.Fill(ctx, []byte("refreshed"), time.Minute, true, "", nil); !errors.Is(err, lock.ErrExists) {
			t.Fatalf("refresh fill over another writer's value (was %q) = %v; want ErrExists", before, err)
		}
		if v := rdb.Get(ctx, key).Val(); v != "theirs" {
			t.Fatalf("value = %q", v)
		}
		noStage(t, rdb, key)
	}
}

// TestGetReadsOrLeases: a hit returns the value and its TTL; a miss takes
// the lease; a second miss finds it held.
func TestGetReadsOrLeases(t *testing.T) {
	l, rdb, key := setup(t)
	ctx := context.Background()
	v, _, le, err := l.Get(ctx, key)
	if err != nil || v != nil || le == nil {
		t.Fatalf("Get of an absent key = %q, %v, %v; want a lease", v, le, err)
	}
	if _, _, _, err := l.Get(ctx, key); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("second Get = %v; want ErrHeld", err)
	}
	if err := le.Fill(ctx, []byte("1"), time.Minute, false, "", nil); err != nil {
		t.Fatal(err)
	}
	v, ttl, le, err := l.Get(ctx, key)
	if err != nil || string(v) != "1" || le != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("Get after the fill = %q, %v, %v, %v", v, ttl, le, err)
	}
	rdb.Persist(ctx, key)
	if _, ttl, _, _ := l.Get(ctx, key); ttl != 0 {
		t.Fatalf("TTL of a persistent value = %v, want 0", ttl)
	}
}
