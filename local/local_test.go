package local_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/local"
)

// visible waits until ristretto has applied key's install.
func visible(t *testing.T, c *local.Cache[string], key string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, ok := c.Get(key); ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became visible", key)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestInstallsAreFenced(t *testing.T) {
	c, err := local.New[string](1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	s := c.Stamp("a")
	if !c.Install("a", "one", 3, 0, s) {
		t.Fatal("install with a current stamp refused")
	}
	if v := visible(t, c, "a"); v != "one" {
		t.Fatalf("Get = %q", v)
	}

	// A value read before an invalidation never lands after it.
	s = c.Stamp("a")
	c.Invalidate("a")
	if c.Install("a", "stale", 5, 0, s) {
		t.Fatal("install stamped before Invalidate accepted")
	}
	if _, ok := c.Get("a"); ok {
		t.Fatal("invalidated key still readable")
	}

	// Nor one read before a flush.
	s = c.Stamp("b")
	c.Flush()
	if c.Install("b", "stale", 5, 0, s) {
		t.Fatal("install stamped before Flush accepted")
	}
	if !c.Install("b", "fresh", 5, 0, c.Stamp("b")) {
		t.Fatal("install after Flush refused")
	}
	if v := visible(t, c, "b"); v != "fresh" {
		t.Fatalf("Get = %q", v)
	}
}

func TestNewNeedsABudget(t *testing.T) {
	if _, err := local.New[string](0); err == nil {
		t.Fatal("zero MaxBytes accepted")
	}
}

// Close may run while other goroutines still use the cache: they miss and
// are refused afterwards, and nothing panics.
func TestCloseUnderLoad(t *testing.T) {
	for range 20 {
		c, err := local.New[string](1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range 2000 {
					k := string(rune('a' + (g+i)%26))
					c.Install(k, k, 1, time.Minute, c.Stamp(k))
					c.Get(k)
					if i%7 == 0 {
						c.Invalidate(k)
					}
				}
			}()
		}
		close(start)
		c.Close()
		wg.Wait()
		if c.Install("z", "z", 1, 0, c.Stamp("z")) {
			t.Fatal("install after Close accepted")
		}
		if _, ok := c.Get("z"); ok {
			t.Fatal("hit after Close")
		}
		c.Close()
	}
}
