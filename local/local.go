package local

import (
	"hash/maphash"
	"time"
	"unsafe"

	ilocal "github.com/tieredcache/tieredcache/internal/local"
)

// Cache is an in-process cache of values of type V. It is safe for
// concurrent use.
type Cache[V any] struct {
	c    *ilocal.Cache[V]
	seed maphash.Seed
}

// New returns an empty Cache whose memory budget is maxBytes, ristretto's
// own structures included; each entry costs its key, the cost given to
// Install and a fixed overhead of about 180 bytes.
func New[V any](maxBytes int64) (*Cache[V], error) {
	seed := maphash.MakeSeed()
	c, err := ilocal.New[V](ilocal.Config{MaxBytes: maxBytes, Seed: seed})
	if err != nil {
		return nil, err
	}
	return &Cache[V]{c: c, seed: seed}, nil
}

// Stamp is a key's generation at one moment.
type Stamp struct{ s ilocal.Stamp }

// Stamp returns key's current stamp. Take it before reading the value to
// install.
func (c *Cache[V]) Stamp(key string) Stamp { return Stamp{c.c.Stamp(c.hash(key))} }

// Get returns the value installed for key, if it is there and has not
// expired.
func (c *Cache[V]) Get(key string) (V, bool) {
	return c.c.Get(c.hash(key), unsafe.Slice(unsafe.StringData(key), len(key)))
}

// Install stores v under key for ttl (zero: until evicted), if key was
// neither invalidated nor the cache flushed since s was taken. cost is the
// value's size in bytes. It reports whether the value was handed to the
// cache, whose admission policy may still refuse it.
func (c *Cache[V]) Install(key string, v V, cost int64, ttl time.Duration, s Stamp) bool {
	return c.c.Install(c.hash(key), key, v, cost, ttl, s.s)
}

// Invalidate drops key and moves its generation: installs stamped before
// the call are refused.
func (c *Cache[V]) Invalidate(key string) { c.c.Invalidate(c.hash(key)) }

// Flush drops every entry and refuses every install stamped before it, in
// constant time.
func (c *Cache[V]) Flush() { c.c.Flush() }

// Close releases the cache's goroutines. Afterwards lookups miss and
// installs are refused. It is safe to call concurrently with other calls,
// and more than once.
func (c *Cache[V]) Close() { c.c.Close() }

func (c *Cache[V]) hash(key string) uint64 { return maphash.String(c.seed, key) }
