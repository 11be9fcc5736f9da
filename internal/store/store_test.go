package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/faultproxy"
	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/internal/store"
)

func newStore(t *testing.T) (*store.Store, *redis.Client, string) {
	t.Helper()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	return store.New(rdb, store.Config{Timeout: time.Second}), rdb, redistest.Prefix(t)
}

func TestGetMiss(t *testing.T) {
	s, _, p := newStore(t)
	_, _, err := s.Get(context.Background(), p+":absent")
	if !errors.Is(err, store.ErrMiss) {
		t.Fatalf("Get(absent) = %v, want ErrMiss", err)
	}
}

func TestSetGetDelete(t *testing.T) {
	s, rdb, p := newStore(t)
	ctx := context.Background()
	key, lease := p+":k", "{"+p+":k}:lease"
	rdb.Set(ctx, lease, "someone", time.Minute)

	sub := rdb.Subscribe(ctx, p+":bus")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	if err := s.Set(ctx, store.Entry{Key: key, Lease: lease, Value: []byte(`{"a":1}`), TTL: time.Minute}, p+":bus", []byte("m1")); err != nil {
		t.Fatal(err)
	}
	got, ttl, err := s.Get(ctx, key)
	if err != nil || string(got) != `{"a":1}` || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("Get = %q, %v, %v", got, ttl, err)
	}
	if n := rdb.Exists(ctx, lease).Val(); n != 0 {
		t.Fatal("Set left the lease in place")
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v", ttl)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "m1" {
		t.Fatalf("published %v, %v", msg, err)
	}

	rdb.Set(ctx, lease, "someone", time.Minute)
	if err := s.Delete(ctx, key, lease, p+":bus", []byte("m2"), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, store.ErrMiss) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if n := rdb.Exists(ctx, lease).Val(); n != 0 {
		t.Fatal("Delete left the lease in place")
	}
	msg, err = sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "m2" {
		t.Fatalf("published %v, %v", msg, err)
	}
}

func TestSetWithoutTTL(t *testing.T) {
	s, rdb, p := newStore(t)
	ctx := context.Background()
	if err := s.Set(ctx, store.Entry{Key: p + ":k", Lease: p + ":l", Value: []byte("1")}, "", nil); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, p+":k").Val(); ttl != -1 {
		t.Fatalf("TTL = %v, want none", ttl)
	}
	rdb.Del(ctx, p+":k")
}

func TestGetWithLease(t *testing.T) {
	s, rdb, p := newStore(t)
	ctx := context.Background()
	key, lease := p+":k", "{"+p+":k}:lease"
	v, _, held, err := s.GetWithLease(ctx, key, lease)
	if err != nil || v != nil || held {
		t.Fatalf("empty: %q %v %v", v, held, err)
	}
	rdb.Set(ctx, lease, "x", time.Minute)
	v, _, held, err = s.GetWithLease(ctx, key, lease)
	if err != nil || v != nil || !held {
		t.Fatalf("leased: %q %v %v", v, held, err)
	}
	rdb.Set(ctx, key, "val", time.Minute)
	v, _, held, err = s.GetWithLease(ctx, key, lease)
	if err != nil || string(v) != "val" || !held {
		t.Fatalf("filled: %q %v %v", v, held, err)
	}
}

func TestMGetAndSetMany(t *testing.T) {
	s, rdb, p := newStore(t)
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, p+":bus")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	entries := []store.Entry{
		{Key: p + ":a", Lease: "{" + p + ":a}:lease", Value: []byte("1"), TTL: time.Minute},
		{Key: p + ":b", Lease: "{" + p + ":b}:lease", Value: []byte("2"), TTL: time.Minute},
	}
	rdb.Set(ctx, entries[0].Lease, "someone", time.Minute)
	if err := s.SetMany(ctx, entries, p+":bus", [][]byte{[]byte("warm")}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, entries[0].Lease).Val(); n != 0 {
		t.Fatal("SetMany left a lease in place")
	}
	vals, err := s.MGet(ctx, []string{p + ":a", p + ":missing", p + ":b"})
	if err != nil {
		t.Fatal(err)
	}
	if string(vals[0]) != "1" || vals[1] != nil || string(vals[2]) != "2" {
		t.Fatalf("MGet = %q", vals)
	}
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "warm" {
		t.Fatalf("published %v, %v", msg, err)
	}
	if vals, err := s.MGet(ctx, nil); err != nil || vals != nil {
		t.Fatalf("MGet(nil) = %v, %v", vals, err)
	}
}

func TestDownIsNotMiss(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	s := store.New(rdb, store.Config{Timeout: time.Second})
	_, _, err := s.Get(context.Background(), "k")
	if err == nil || errors.Is(err, store.ErrMiss) {
		t.Fatalf("Get on a dead server = %v; want an error that is not ErrMiss", err)
	}
	if err := s.Set(context.Background(), store.Entry{Key: "k", Lease: "{k}:lease", Value: []byte("1")}, "", nil); err == nil {
		t.Fatal("Set on a dead server succeeded")
	}
}

func TestDeleteMany(t *testing.T) {
	s, rdb, p := newStore(t)
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, p+":bus")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	keys := []string{p + ":a", p + ":b"}
	leases := []string{"{" + p + ":a}:lease", "{" + p + ":b}:lease"}
	for i := range keys {
		rdb.Set(ctx, keys[i], "v", time.Minute)
		rdb.Set(ctx, leases[i], "tok", time.Minute)
	}
	if err := s.DeleteMany(ctx, keys, leases, p+":bus", [][]byte{[]byte("gone")}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, append(keys, leases...)...).Val(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "gone" {
		t.Fatalf("message %v, %v", m, err)
	}
	if err := s.DeleteMany(ctx, keys, leases[:1], "", nil); err == nil {
		t.Fatal("mismatched lengths accepted")
	}
}

// fakeGuard admits calls until told to refuse, and records outcomes.
type fakeGuard struct {
	refuse   error
	outcomes []error
}

func (g *fakeGuard) Allow() (func(error), error) {
	if g.refuse != nil {
		return nil, g.refuse
	}
	return func(err error) { g.outcomes = append(g.outcomes, err) }, nil
}

func TestGuard(t *testing.T) {
	srv := redistest.Shared(t)
	g := &fakeGuard{}
	s := store.New(srv.Client(t), store.Config{Timeout: time.Second, Guard: g})
	ctx := context.Background()
	p := redistest.Prefix(t)
	if _, _, err := s.Get(ctx, p+":absent"); !errors.Is(err, store.ErrMiss) {
		t.Fatal(err)
	}
	if len(g.outcomes) != 1 || (g.outcomes[0] != nil && !errors.Is(g.outcomes[0], redis.Nil)) {
		t.Fatalf("outcomes %v; the guard must hear a miss as no failure", g.outcomes)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Get(cancelled, p+":k"); err == nil {
		t.Fatal("Get with a cancelled context succeeded")
	}
	if last := g.outcomes[len(g.outcomes)-1]; !errors.Is(last, context.Canceled) {
		t.Fatalf("a caller's cancellation reached the guard as %v", last)
	}
	g.refuse = errors.New("open")
	if _, _, err := s.Get(ctx, p+":k"); err == nil || !strings.HasSuffix(err.Error(), ": open") {
		t.Fatalf("refused call = %v", err)
	}
}

// failSecond makes the second command of every pipeline fail.
type failSecond struct{}

func (failSecond) DialHook(next redis.DialHook) redis.DialHook { return next }
func (failSecond) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (failSecond) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 1 {
			cmds[1].SetErr(errors.New("node down"))
			return cmds[0].Err()
		}
		return err
	}
}

// TestPipelineFailureBehindAMiss: a miss on the first key of a pipeline
// must not hide a failure of a later command from the caller or the guard.
func TestPipelineFailureBehindAMiss(t *testing.T) {
	srv := redistest.Shared(t)
	o := srv.Options()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{o.Addr}, ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
		return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: o.Addr}}}}, nil
	}})
	defer rdb.Close()
	rdb.AddHook(failSecond{})
	g := &fakeGuard{}
	s := store.New(rdb, store.Config{Timeout: time.Second, Guard: g})
	p := redistest.Prefix(t)
	if _, err := s.MGet(context.Background(), []string{p + ":absent", p + ":other"}); err == nil {
		t.Fatal("MGet hid the failure of its second GET")
	}
	if last := g.outcomes[len(g.outcomes)-1]; last == nil || errors.Is(last, redis.Nil) {
		t.Fatalf("the guard heard %v for a failed pipeline", last)
	}
}

// TestFailedSetNeverLandsLater: the network holds a Set's bytes past its
// timeout; the caller gets an error; the key is deleted (the replay) and
// written anew by another writer; then the held bytes reach Redis. The
// newer value must stay: the late write is refused by its deadline.
func TestFailedSetNeverLandsLater(t *testing.T) {
	srv := redistest.Private(t)
	direct := srv.Client(t)
	p, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ro := srv.Options()
	ro.Addr, ro.MaxRetries = p.Addr(), -1
	ro.ReadTimeout, ro.WriteTimeout = 5*time.Second, 5*time.Second
	viaProxy := redis.NewClient(ro)
	t.Cleanup(func() { _ = viaProxy.Close() })
	s := store.New(viaProxy, store.Config{Timeout: 200 * time.Millisecond})
	ctx := context.Background()
	entry := func(v string) store.Entry {
		return store.Entry{Key: "k", Lease: "{k}:lease", Value: []byte(v), TTL: time.Minute}
	}
	if err := s.Set(ctx, entry("v1"), "", nil); err != nil {
		t.Fatal(err)
	}
	scripts := func() int64 { return commandCalls(t, direct, "evalsha") + commandCalls(t, direct, "eval") }
	ran := scripts()

	p.SetMode(faultproxy.Hang)
	start := time.Now()
	if err := s.Set(ctx, entry("v2"), "", nil); err == nil {
		t.Fatal("Set through a hung network succeeded")
	}
	t.Logf("failed Set returned after %v", time.Since(start))
	direct.Del(ctx, "k")          // the replay of the failed write
	direct.Set(ctx, "k", "v3", 0) // a newer write
	p.SetMode(faultproxy.Pass)    // the held bytes arrive
	deadline := time.Now().Add(10 * time.Second)
	for scripts() == ran {
		if time.Now().After(deadline) {
			t.Fatal("the held write never reached Redis")
		}
		time.Sleep(time.Millisecond)
	}
	if got := direct.Get(ctx, "k").Val(); got != "v3" {
		t.Fatalf("Redis holds %q after the held write arrived, want v3", got)
	}
	if ks := direct.Keys(ctx, "{k}:lease:stage:*").Val(); len(ks) != 0 {
		t.Fatalf("staging keys left behind: %v", ks)
	}
}

// commandCalls returns how many times Redis ran cmd.
func commandCalls(t *testing.T, rdb *redis.Client, cmd string) int64 {
	t.Helper()
	for _, line := range strings.Split(rdb.Info(context.Background(), "commandstats").Val(), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		return n
	}
	return 0
}
