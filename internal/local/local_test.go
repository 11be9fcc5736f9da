package local_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tieredcache/tieredcache/internal/local"
)

func newCache(t testing.TB, maxBytes int64) *local.Cache[string] {
	t.Helper()
	c, err := local.New[string](local.Config{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func install(t testing.TB, c *local.Cache[string], key, val string) {
	t.Helper()
	h := c.HashString(key)
	if !c.Install(h, key, val, int64(len(val)), 0, c.Stamp(h)) {
		t.Fatalf("Install(%q) refused", key)
	}
	c.Wait()
}

func get(c *local.Cache[string], key string) (string, bool) {
	return c.Get(c.HashString(key), []byte(key))
}

func TestInstallGet(t *testing.T) {
	c := newCache(t, 1<<20)
	install(t, c, "a", "1")
	if v, ok := get(c, "a"); !ok || v != "1" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
	if _, ok := get(c, "b"); ok {
		t.Fatal("Get(b) hit")
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []local.Config{{}, {MaxBytes: -1}, {MaxBytes: 10, Counters: -1}} {
		if _, err := local.New[int](cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestEntryKeyIsVerified(t *testing.T) {
	c := newCache(t, 1<<20)
	install(t, c, "a", "1")
	// Look up another key under a's hash: a collision must read as a miss.
	if v, ok := c.Get(c.HashString("a"), []byte("b")); ok {
		t.Fatalf("colliding lookup returned %q", v)
	}
}

func TestInvalidateFailsOlderStamps(t *testing.T) {
	c := newCache(t, 1<<20)
	h := c.HashString("k")
	s := c.Stamp(h)
	c.Invalidate(h)
	if c.Install(h, "k", "stale", 5, 0, s) {
		t.Fatal("install stamped before Invalidate succeeded")
	}
	c.Wait()
	if _, ok := get(c, "k"); ok {
		t.Fatal("stale value visible")
	}
	install(t, c, "k", "fresh")
	c.Invalidate(h)
	c.Wait()
	if _, ok := get(c, "k"); ok {
		t.Fatal("value visible after Invalidate")
	}
}

func TestStampAppendTo(t *testing.T) {
	c := newCache(t, 1<<20)
	h := c.HashString("a")
	s1 := string(c.Stamp(h).AppendTo(nil))
	if s1 != string(c.Stamp(h).AppendTo(nil)) {
		t.Fatal("equal stamps encode differently")
	}
	c.Invalidate(h)
	s2 := string(c.Stamp(h).AppendTo(nil))
	c.Flush()
	s3 := string(c.Stamp(h).AppendTo(nil))
	if s1 == s2 || s2 == s3 || s1 == s3 {
		t.Fatalf("distinct stamps encode alike: %q %q %q", s1, s2, s3)
	}
}

func TestCloseIsNotEviction(t *testing.T) {
	var evicted atomic.Int64
	c, err := local.New[string](local.Config{MaxBytes: 1 << 20, OnEvict: func() { evicted.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		k := fmt.Sprint(i)
		h := c.HashString(k)
		c.Install(h, k, "v", 1, 0, c.Stamp(h))
	}
	c.Wait()
	c.Close()
	if n := evicted.Load(); n != 0 {
		t.Fatalf("Close reported %d evictions", n)
	}
}

func TestFlush(t *testing.T) {
	c := newCache(t, 1<<20)
	install(t, c, "a", "1")
	h := c.HashString("b")
	s := c.Stamp(h)
	c.Flush()
	if _, ok := get(c, "a"); ok {
		t.Fatal("entry survived Flush")
	}
	if c.Install(h, "b", "2", 1, 0, s) {
		t.Fatal("install stamped before Flush succeeded")
	}
	install(t, c, "a", "3")
	if v, ok := get(c, "a"); !ok || v != "3" {
		t.Fatalf("after Flush and reinstall Get(a) = %q, %v", v, ok)
	}
}

func TestTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := local.New[string](local.Config{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		h := c.HashString("a")
		if !c.Install(h, "a", "1", 1, time.Second, c.Stamp(h)) {
			t.Fatal("Install refused")
		}
		c.Wait()
		if _, ok := get(c, "a"); !ok {
			t.Fatal("miss before TTL")
		}
		// An entry expires up to one tick early, never late.
		time.Sleep(time.Second - 2*local.ClockTick)
		if _, ok := get(c, "a"); !ok {
			t.Fatal("miss more than a tick before TTL")
		}
		time.Sleep(2 * local.ClockTick)
		if _, ok := get(c, "a"); ok {
			t.Fatal("hit at TTL")
		}
		if c.Install(h, "a", "1", 1, -1, c.Stamp(h)) {
			t.Fatal("negative TTL accepted")
		}
	})
}

func TestCostAccounting(t *testing.T) {
	c := newCache(t, 1<<20)
	install(t, c, "key", "value")
	want := int64(len("value") + len("key") + local.EntryOverhead)
	if got := c.Cost(); got != want {
		t.Fatalf("Cost() = %d, want %d", got, want)
	}
}

func TestBudgetHolds(t *testing.T) {
	const budget = 64 << 10
	c := newCache(t, budget)
	val := string(make([]byte, 200))
	for i := range 2000 {
		k := fmt.Sprintf("k%d", i)
		h := c.HashString(k)
		c.Install(h, k, val, int64(len(val)), 0, c.Stamp(h))
	}
	c.Wait()
	if got := c.Cost(); got > budget {
		t.Fatalf("Cost() = %d over budget %d", got, budget)
	}
}

func TestClosed(t *testing.T) {
	c, err := local.New[string](local.Config{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	install(t, c, "a", "1")
	c.Close()
	c.Close()
	if _, ok := get(c, "a"); ok {
		t.Fatal("hit after Close")
	}
	h := c.HashString("a")
	if c.Install(h, "a", "1", 1, 0, c.Stamp(h)) {
		t.Fatal("Install accepted after Close")
	}
	c.Invalidate(h)
	c.Wait()
}

// TestNoResurrection races installers against invalidators on one key. Each
// round an installer stamps, then (after the invalidator has run) installs a
// stale value; whatever the interleaving of the Install and Invalidate calls,
// once both have returned the stale value must not be readable.
func TestNoResurrection(t *testing.T) {
	c := newCache(t, 1<<20)
	const key = "hot"
	h := c.HashString(key)
	for round := range 2000 {
		stale := fmt.Sprint("stale-", round)
		s := c.Stamp(h)
		var wg sync.WaitGroup
		wg.Go(func() { c.Install(h, key, stale, 8, 0, s) })
		wg.Go(func() { c.Invalidate(h) })
		wg.Wait()
		// The invalidation came after the stamp, so whichever ran first the
		// stale value must be gone once the buffered writes are applied.
		c.Wait()
		if v, ok := get(c, key); ok {
			t.Fatalf("round %d: stale value %q visible after Invalidate", round, v)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	c := newCache(b, 1<<20)
	install(b, c, "fastapi_template:tenant-global:user:uuid-456:v1", "v")
	const k = "fastapi_template:tenant-global:user:uuid-456:v1"
	h, key := c.HashString(k), []byte(k)
	b.ReportAllocs()
	for b.Loop() {
		c.Get(h, key)
	}
}

// TestInstallIsVisibleAtOnce: ristretto applies a new key asynchronously;
// the stripe's recent entry serves it meanwhile, and never after the key
// is invalidated or the cache flushed.
func TestInstallIsVisibleAtOnce(t *testing.T) {
	c := newCache(t, 64<<20)
	for i := range 1000 {
		k := fmt.Sprint("k", i)
		h := c.HashString(k)
		if !c.Install(h, k, k, 1, 0, c.Stamp(h)) {
			continue // ristretto's buffer was full: dropped, as any cache may
		}
		if v, ok := c.Get(h, []byte(k)); !ok || v != k {
			t.Fatalf("Get right after Install of %s = %q, %v", k, v, ok)
		}
		if i%2 == 0 {
			c.Invalidate(h)
		} else {
			c.Flush()
		}
		if _, ok := c.Get(h, []byte(k)); ok {
			t.Fatalf("%s readable after it was invalidated", k)
		}
	}
}

// TestInvalidateReadReportsUse: InvalidateRead returns the value only if a
// lookup returned it since its install, drops it either way, and a value
// that Replace installs in place of one in use counts as in use.
func TestInvalidateReadReportsUse(t *testing.T) {
	c, err := local.New[string](local.Config{MaxBytes: 1 << 20, TrackUse: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	h := c.HashString("k")

	install(t, c, "k", "unread")
	if v, used := c.InvalidateRead(h, "k"); used {
		t.Fatalf("an entry never looked up reported in use (%q)", v)
	}
	if _, ok := get(c, "k"); ok {
		t.Fatal("InvalidateRead left the entry")
	}

	install(t, c, "k", "read")
	if _, ok := get(c, "k"); !ok {
		t.Fatal("installed entry not found")
	}
	if _, used := c.InvalidateRead(h, "other"); used {
		t.Fatal("in use under another key")
	}
	install(t, c, "k", "read")
	get(c, "k")
	if v, used := c.InvalidateRead(h, "k"); !used || v != "read" {
		t.Fatalf("InvalidateRead of an entry looked up = %q, %v", v, used)
	}

	// A writer replaces an entry in use: the new one is in use too.
	install(t, c, "k", "old")
	get(c, "k")
	before := c.Stamp(h)
	after, ok := c.Replace([]uint64{h}, []local.Stamp{before})
	if !ok[0] || !c.Install(h, "k", "new", 3, 0, after[0]) {
		t.Fatal("Replace or the install after it refused")
	}
	c.Wait()
	if v, used := c.InvalidateRead(h, "k"); !used || v != "new" {
		t.Fatalf("the replacement of an entry in use: %q, %v", v, used)
	}

	// And one that replaces an entry not in use is not.
	install(t, c, "k", "old")
	before = c.Stamp(h)
	after, ok = c.Replace([]uint64{h}, []local.Stamp{before})
	if !ok[0] || !c.Install(h, "k", "new", 3, 0, after[0]) {
		t.Fatal("Replace or the install after it refused")
	}
	c.Wait()
	if _, used := c.InvalidateRead(h, "k"); used {
		t.Fatal("the replacement of an entry not in use reported in use")
	}
}
