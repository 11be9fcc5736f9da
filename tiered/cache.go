package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/local"
	"github.com/tieredcache/tieredcache/lock"
	"github.com/tieredcache/tieredcache/remote"
)

// keyBufSize is the stack buffer keys are built in; longer keys allocate.
const keyBufSize = 160

// Cache is a typed view of a Client for one resource type ("user",
// "organization"). It shares the Client's in-process budget, Redis
// connection and subscription. Values are JSON in Redis and decoded Go
// values in the process: what a read returns is shared with other readers
// and must not be modified.
type Cache[V any] struct {
	c        *Client
	resource string
	keys     *keys.Resource
	base     call // the options of a call that gives none
	cfg      cacheConfig
	group    singleflight.Group
	counters cacheCounters
}

// NewCache returns the cache of resource values of type V.
func NewCache[V any](c *Client, resource string, opts ...CacheOption) (*Cache[V], error) {
	if c == nil {
		return nil, errors.New("tiered: NewCache with a nil Client")
	}
	if c.closed.Load() {
		return nil, ErrClosed
	}
	rk, err := c.keys.Resource(resource)
	if err != nil {
		return nil, err
	}
	cfg := cacheConfig{ttl: c.opts.TTL, l1ttl: c.opts.L1TTL, codec: remote.JSON{}}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if c.store == nil {
		// In L1-only mode the in-process tier is the cache: only TTL applies.
		cfg.l1ttl = cfg.ttl
	}
	if cfg.version != "" {
		if rk, err = rk.WithVersion(cfg.version); err != nil {
			return nil, err
		}
	}
	cache := &Cache[V]{c: c, resource: resource, keys: rk, cfg: cfg}
	cache.base, _ = cache.resolve(nil)
	c.register(cache)
	return cache, nil
}

// Resource returns the cache's resource type.
func (c *Cache[V]) Resource() string { return c.resource }

func (c *Cache[V]) stats() CacheStats { return c.counters.snapshot(c.resource) }

// Key returns the Redis key of id under the call's options.
func (c *Cache[V]) Key(ctx context.Context, id string, opts ...CallOption) (string, error) {
	co, err := c.resolve(opts)
	if err != nil {
		return "", err
	}
	var buf [keyBufSize]byte
	k, err := c.appendKey(buf[:0], ctx, id, co)
	if err != nil {
		return "", err
	}
	return string(k), nil
}

func (c *Cache[V]) appendKey(dst []byte, ctx context.Context, id string, co call) ([]byte, error) {
	var parts [3]keys.Part
	n := 0
	if co.hasTenant {
		parts[n] = keys.Tenant(co.tenant)
		n++
	}
	if co.hasVersion {
		parts[n] = keys.Version(co.version)
		n++
	}
	if co.suffix != "" {
		parts[n] = keys.Suffix(co.suffix)
		n++
	}
	return c.keys.Append(dst, ctx, id, parts[:n]...)
}

// l1Get looks key up in the in-process tier. The tier holds a pointer to
// each value, so a hit copies the value once, into the caller's result,
// however large it is.
func (c *Cache[V]) l1Get(h uint64, key []byte) (*V, bool) {
	if c.c.l1 == nil || c.cfg.noL1 {
		return nil, false
	}
	if v, ok := c.c.l1.Get(h, key); ok {
		p, ok := v.(*V)
		return p, ok
	}
	return nil, false
}

func (c *Cache[V]) stamp(h uint64) local.Stamp {
	if c.c.l1 == nil {
		return local.Stamp{}
	}
	return c.c.l1.Stamp(h)
}

// install puts v in the in-process tier if s is still current.
func (c *Cache[V]) install(h uint64, key string, v V, size int, ttl time.Duration, degraded bool, s local.Stamp) {
	if c.c.l1 == nil || c.cfg.noL1 {
		return
	}
	if c.c.l1.Install(h, key, &v, int64(size), c.c.l1TTL(ttl, degraded), s) && c.c.store == nil {
		// ristretto applies a new key asynchronously. In L1-only mode
		// nothing else would serve the next read, so wait for it to land.
		c.c.l1.Wait()
	}
}

func (c *Cache[V]) encode(key string, v V) ([]byte, error) {
	data, err := c.cfg.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("tiered: encode %s: %w", key, err)
	}
	if len(data) > c.c.opts.MaxValueBytes {
		c.counters.tooLarge.inc()
		return nil, fmt.Errorf("tiered: %s: %w: %d bytes encoded, limit %d", key, ErrTooLarge, len(data), c.c.opts.MaxValueBytes)
	}
	return data, nil
}

// decode decodes a value read from Redis. A value that does not decode is
// deleted, so that the next read loads a good one, and reported as a miss.
func (c *Cache[V]) decode(ctx context.Context, key string, data []byte) (V, bool) {
	var v V
	err := c.cfg.codec.Unmarshal(data, &v)
	if err == nil {
		return v, true
	}
	c.counters.corrupt.inc()
	c.c.opts.Logger.Warn("tiered: deleting a value that does not decode", "key", key, "bytes", len(data), "error", err)
	if uerr := c.c.store.Unlink(ctx, key); uerr != nil {
		c.redisError("unlink", uerr)
	}
	var zero V
	return zero, false
}

func (c *Cache[V]) redisError(op string, err error) {
	if isBreakerRefusal(err) {
		c.c.counters.breakerRejected.inc()
		return
	}
	c.c.counters.redisError(op)
	c.c.opts.Logger.Debug("tiered: redis call failed", "operation", op, "resource_type", c.resource, "error", err)
}

// Get returns the cached value of id: from the in-process tier, else from
// Redis (keeping a copy in-process). It returns ErrNotFound when neither
// tier holds it, and an error wrapping ErrUnavailable when Redis could not
// answer.
func (c *Cache[V]) Get(ctx context.Context, id string, opts ...CallOption) (V, error) {
	if c.c.debug(ctx) {
		start := time.Now()
		v, t, err := c.get(ctx, id, opts)
		c.logOp(ctx, "cache_get", t, start, err, opts)
		return v, err
	}
	v, _, err := c.get(ctx, id, opts)
	return v, err
}

func (c *Cache[V]) get(ctx context.Context, id string, opts []CallOption) (V, tier, error) {
	var zero V
	if c.c.closed.Load() {
		return zero, tierNone, ErrClosed
	}
	var buf [keyBufSize]byte
	if len(opts) == 0 {
		key, h, hit, err := c.lookup(buf[:0], ctx, id)
		switch {
		case err != nil:
			return zero, tierNone, err
		case hit != nil:
			return *hit, tierL1, nil
		}
		return c.getRemote(ctx, string(key), h, c.base)
	}
	key, h, co, hit, err := c.lookupWith(buf[:0], ctx, id, opts)
	switch {
	case err != nil:
		return zero, tierNone, err
	case hit != nil:
		return *hit, tierL1, nil
	}
	return c.getRemote(ctx, string(key), h, co)
}

// lookup builds the key of id into buf and looks it up in the in-process
// tier, for a call without options: the common one, which has nothing to
// resolve.
func (c *Cache[V]) lookup(buf []byte, ctx context.Context, id string) (key []byte, h uint64, hit *V, err error) {
	if key, err = c.keys.Append(buf, ctx, id); err != nil {
		return nil, 0, nil, err
	}
	h = c.c.hash(key)
	if p, ok := c.l1Get(h, key); ok {
		c.counters.hitsL1.inc()
		return key, h, p, nil
	}
	return key, h, nil, nil
}

// lookupWith is lookup for a call with options; a refresh skips the
// in-process tier.
func (c *Cache[V]) lookupWith(buf []byte, ctx context.Context, id string, opts []CallOption) (key []byte, h uint64, co call, hit *V, err error) {
	if co, err = c.resolve(opts); err != nil {
		return nil, 0, co, nil, err
	}
	if key, err = c.appendKey(buf, ctx, id, co); err != nil {
		return nil, 0, co, nil, err
	}
	h = c.c.hash(key)
	if !co.refresh {
		if p, ok := c.l1Get(h, key); ok {
			c.counters.hitsL1.inc()
			return key, h, co, p, nil
		}
	}
	return key, h, co, nil, nil
}

// keyOf resolves a write's options and builds its key.
func (c *Cache[V]) keyOf(ctx context.Context, id string, opts []CallOption) (key string, h uint64, co call, err error) {
	if co, err = c.resolve(opts); err != nil {
		return "", 0, co, err
	}
	var buf [keyBufSize]byte
	kb, err := c.appendKey(buf[:0], ctx, id, co)
	if err != nil {
		return "", 0, co, err
	}
	return string(kb), c.c.hash(kb), co, nil
}

func (c *Cache[V]) getRemote(ctx context.Context, key string, h uint64, co call) (V, tier, error) {
	var zero V
	if c.c.store == nil {
		c.miss()
		return zero, tierNone, ErrNotFound
	}
	s := c.stamp(h)
	start := time.Now()
	data, err := c.c.store.Get(ctx, key)
	c.c.metrics.observe(opGet, start)
	switch {
	case errors.Is(err, remote.ErrMiss):
		c.miss()
		return zero, tierNone, ErrNotFound
	case err != nil && ctx.Err() != nil:
		// The caller gave up: not a Redis failure.
		return zero, tierNone, fmt.Errorf("tiered: get %s: %w", key, ctx.Err())
	case err != nil:
		c.redisError("get", err)
		return zero, tierNone, unavailable("get", key, err)
	}
	v, ok := c.decode(ctx, key, data)
	if !ok {
		c.miss()
		return zero, tierNone, ErrNotFound
	}
	c.counters.hitsL2.inc()
	c.install(h, key, v, len(data), co.l1ttl, false, s)
	return v, tierL2, nil
}

func (c *Cache[V]) miss() {
	c.counters.misses.inc()
}

// Set stores v under id in Redis (for the cache's or the call's TTL) and in
// this process, and tells every other process to drop its copy. The Redis
// write, the removal of any load lease on the key (so a load that started
// earlier cannot overwrite v) and the invalidation are one atomic script.
// If Redis fails, the local copy is dropped and the error wraps
// ErrUnavailable.
func (c *Cache[V]) Set(ctx context.Context, id string, v V, opts ...CallOption) error {
	if c.c.debug(ctx) {
		start := time.Now()
		err := c.set(ctx, id, v, opts)
		c.logOp(ctx, "cache_set", tierNone, start, err, opts)
		return err
	}
	return c.set(ctx, id, v, opts)
}

func (c *Cache[V]) set(ctx context.Context, id string, v V, opts []CallOption) error {
	if c.c.closed.Load() {
		return ErrClosed
	}
	key, h, co, err := c.keyOf(ctx, id, opts)
	if err != nil {
		return err
	}
	data, err := c.encode(key, v)
	if err != nil {
		return err
	}
	l1 := c.c.l1
	if c.c.store == nil {
		if l1 != nil && !c.cfg.noL1 {
			l1.Invalidate(h)
			c.install(h, key, v, len(data), co.l1ttl, false, c.stamp(h))
		}
		return nil
	}
	before := c.stamp(h)
	msg, err := c.c.bus.Encode(remote.KindInvalidate, key)
	if err != nil {
		return fmt.Errorf("tiered: set %s: %w", key, err)
	}
	start := time.Now()
	err = c.c.store.Set(ctx, remote.Entry{Key: key, Lease: lock.Key(key), Value: data, TTL: co.ttl}, c.c.opts.Channel, msg)
	c.c.metrics.observe(opSet, start)
	if l1 != nil {
		l1.Invalidate(h)
	}
	if err != nil {
		c.redisError("set", err)
		c.c.deferInvalidation(key)
		return unavailable("set", key, err)
	}
	c.c.counters.published.inc()
	// Keep the new value locally unless another write to this key's stripe
	// came in while ours was in flight: then ours may not be the latest,
	// and the next read goes to Redis.
	if l1 != nil && !c.cfg.noL1 {
		if after := l1.Stamp(h); after.Follows(before) {
			c.install(h, key, v, len(data), co.l1ttl, false, after)
		}
	}
	return nil
}

// Delete removes id from Redis and from this process and tells every other
// process to drop its copy. A load of the key under way anywhere will not
// cache what it loaded. The local copy is dropped even when Redis fails;
// the error (wrapping ErrUnavailable) then says other processes may still
// hold theirs.
func (c *Cache[V]) Delete(ctx context.Context, id string, opts ...CallOption) error {
	if c.c.debug(ctx) {
		start := time.Now()
		err := c.del(ctx, id, opts)
		c.logOp(ctx, "cache_delete", tierNone, start, err, opts)
		return err
	}
	return c.del(ctx, id, opts)
}

func (c *Cache[V]) del(ctx context.Context, id string, opts []CallOption) error {
	if c.c.closed.Load() {
		return ErrClosed
	}
	key, h, _, err := c.keyOf(ctx, id, opts)
	if err != nil {
		return err
	}
	if c.c.l1 != nil {
		c.c.l1.Invalidate(h)
	}
	if c.c.store == nil {
		return nil
	}
	msg, err := c.c.bus.Encode(remote.KindInvalidate, key)
	if err != nil {
		return fmt.Errorf("tiered: delete %s: %w", key, err)
	}
	start := time.Now()
	err = c.c.store.Delete(ctx, key, lock.Key(key), c.c.opts.Channel, msg)
	c.c.metrics.observe(opDelete, start)
	if c.c.l1 != nil {
		// Again after the write: a load that read Redis before the delete
		// and installs after the first invalidation must fail too.
		c.c.l1.Invalidate(h)
	}
	if err != nil {
		c.redisError("delete", err)
		c.c.deferInvalidation(key)
		return unavailable("delete", key, err)
	}
	c.c.counters.published.inc()
	return nil
}

// warmBatch is how many values Warm writes per round trip and message.
const warmBatch = 1000

// Warm stores many values at once (the template's cache warming), in
// pipelined round trips of up to a thousand values, each followed by one
// invalidation message for its keys. It is not atomic: on error, earlier
// batches were written.
func (c *Cache[V]) Warm(ctx context.Context, values map[string]V, opts ...CallOption) error {
	if c.c.closed.Load() {
		return ErrClosed
	}
	co, err := c.resolve(opts)
	if err != nil {
		return err
	}
	items := make([]warmItem[V], 0, len(values))
	for id, v := range values {
		var buf [keyBufSize]byte
		kb, err := c.appendKey(buf[:0], ctx, id, co)
		if err != nil {
			return err
		}
		key := string(kb)
		data, err := c.encode(key, v)
		if err != nil {
			return err
		}
		items = append(items, warmItem[V]{key: key, h: c.c.hash(kb), v: v, data: data})
	}
	for batch := range slices.Chunk(items, warmBatch) {
		if err := c.warmBatch(ctx, batch, co); err != nil {
			return err
		}
	}
	return nil
}

type warmItem[V any] struct {
	key  string
	h    uint64
	v    V
	data []byte
}

func (c *Cache[V]) warmBatch(ctx context.Context, batch []warmItem[V], co call) error {
	l1 := c.c.l1
	before := make([]local.Stamp, len(batch))
	for i, it := range batch {
		before[i] = c.stamp(it.h)
	}
	if c.c.store != nil {
		entries := make([]remote.Entry, len(batch))
		keyList := make([]string, len(batch))
		for i, it := range batch {
			entries[i] = remote.Entry{Key: it.key, Lease: lock.Key(it.key), Value: it.data, TTL: co.ttl}
			keyList[i] = it.key
		}
		msgs, err := c.c.bus.EncodeAll(remote.KindInvalidate, keyList...)
		if err != nil {
			return fmt.Errorf("tiered: warm: %w", err)
		}
		start := time.Now()
		err = c.c.store.SetMany(ctx, entries, c.c.opts.Channel, msgs)
		c.c.metrics.observe(opSet, start)
		if err != nil {
			for _, it := range batch {
				if l1 != nil {
					l1.Invalidate(it.h)
				}
			}
			c.redisError("set", err)
			c.c.deferInvalidation(keyList...)
			return unavailable("warm", fmt.Sprintf("(%d keys)", len(batch)), err)
		}
		c.c.counters.published.inc()
	}
	if l1 == nil || c.cfg.noL1 {
		return nil
	}
	// Invalidate every key first; then a key's stripe must have moved by
	// exactly the number of this batch's keys in it, or another write came
	// in meanwhile and the key is left for the next read.
	perStripe := make(map[int]uint64, len(batch))
	for _, it := range batch {
		l1.Invalidate(it.h)
		perStripe[local.StripeOf(it.h)]++
	}
	for i, it := range batch {
		if after := l1.Stamp(it.h); after.FollowsN(before[i], perStripe[local.StripeOf(it.h)]) {
			c.install(it.h, it.key, it.v, len(it.data), co.l1ttl, false, after)
		}
	}
	return nil
}
