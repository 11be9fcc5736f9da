package tiered

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tieredcache/tieredcache/internal/envelope"
	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/keys"
)

// keyBufSize is the stack buffer keys are built in; longer keys allocate.
const keyBufSize = 160

// Cache is a typed view of a Client for one resource type ("user",
// "organization"). It shares the Client's in-process budget, Redis
// connection and subscription. Values are JSON in Redis and decoded Go
// values in the process: what a read returns is shared with other readers
// and must not be modified.
type Cache[V any] struct {
	c                  *Client
	resource           string
	keys               *keys.Resource
	base               call     // the options of a call that gives none
	noL1               bool     // values stay out of the in-process tier
	copy               copyMode // how values handed over are kept out of their writer's reach
	group              singleflight.Group
	counters           cacheCounters
	fresh              freshness
	env                *envelope.Envelope // compression and encryption
	loadNanos          atomic.Int64       // running estimate of a load's duration
	decodeLog, fillLog rateLimit
	refreshLog         rateLimit
}

// NewCache returns the cache of resource values of type V.
func NewCache[V any](c *Client, resource string, opts ...Option) (*Cache[V], error) {
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
	base, err := call{ttl: c.opts.TTL, l1ttl: c.opts.L1TTL, codec: jsonCodec{}}.apply(atNewCache, opts)
	if err != nil {
		return nil, err
	}
	if c.store == nil {
		// In L1-only mode the in-process tier is the cache: only TTL applies.
		base.l1ttl = base.ttl
	}
	base.l1ttl = min(base.l1ttl, base.ttl)
	if base.hasVersion {
		// The cache's version is its key builder's default; only a call's
		// Version is passed on with each key.
		if rk, err = rk.WithVersion(base.version); err != nil {
			return nil, err
		}
		base.version, base.hasVersion = "", false
	}
	only := base.only()
	base.cache = nil
	env, err := envelope.New(only.envelope)
	if err != nil {
		return nil, fmt.Errorf("tiered: NewCache(%s): %w", resource, err)
	}
	cache := &Cache[V]{c: c, resource: resource, keys: rk, base: base, fresh: only.fresh, env: env,
		noL1: base.noL1 || c.l1off, copy: copyModeOf(reflect.TypeFor[V]())}
	base.noL1 = false // kept in cache.noL1
	cache.base = base
	c.register(cache)
	return cache, nil
}

func (c *Cache[V]) stats() CacheStats { return c.counters.snapshot(c.resource) }

// appendKey appends the key of id under the call options co to dst.
func (c *Cache[V]) appendKey(dst []byte, ctx context.Context, id string, co call) ([]byte, error) {
	return c.buildKey(dst, ctx, id, &co)
}

// buildKey is appendKey with co by reference, which the read path uses:
// a call is too large to copy for nothing on every hit.
func (c *Cache[V]) buildKey(dst []byte, ctx context.Context, id string, co *call) ([]byte, error) {
	if !co.hasTenant && !co.hasVersion && co.suffix == "" {
		return c.keys.Append(dst, ctx, id)
	}
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
// It returns nil on a miss.
func (c *Cache[V]) l1Get(h uint64, key []byte) *held[V] {
	if c.noL1 {
		return nil
	}
	if v, ok := c.c.l1.Get(h, key); ok {
		p, _ := v.(*held[V])
		return p
	}
	return nil
}

func (c *Cache[V]) stamp(h uint64) local.Stamp { return c.c.l1.Stamp(h) }

// install puts hd in the in-process tier if s is still current.
func (c *Cache[V]) install(h uint64, key string, hd *held[V], size int, ttl time.Duration, degraded bool, s local.Stamp) {
	if c.noL1 {
		return
	}
	hd.owner = c
	if c.c.l1.Install(h, key, hd, int64(size), c.c.l1TTL(ttl, degraded), s) &&
		(c.c.store == nil || degraded || c.c.degraded.Load()) {
		// ristretto applies a new key asynchronously. Without Redis (L1-only
		// mode, or Redis failing) nothing else would serve the next read:
		// wait for it to land, or that read would load again.
		c.c.l1.Wait()
	}
}

// keep installs v, whose encoding is data, fenced by s. When a V can share
// memory with whoever handed it over (a caller of Set, a loader), the
// in-process tier gets a copy instead, so that nobody can change what
// later reads return: a deep copy that shares only strings, or, for a V
// reflection cannot copy, one decoded from data.
func (c *Cache[V]) keep(r *read[V], v V, data []byte, degraded bool, s local.Stamp) {
	if c.noL1 || r.co.noL1 {
		return
	}
	switch c.copy {
	case copyDeep:
		v = deepCopy(v)
	case copyDecode:
		var cp V
		if err := c.unmarshal(data, &cp); err != nil {
			return
		}
		v = cp
	}
	c.install(r.h, r.key, &held[V]{v: v, fresh: r.fresh, tookMicros: micros(r.took)}, len(data), r.co.l1ttl, degraded, s)
}

// keepAbsent installs a cached absence of r's key, fenced by s.
func (c *Cache[V]) keepAbsent(r *read[V], ttl time.Duration, degraded bool, s local.Stamp) {
	if c.noL1 || r.co.noL1 {
		return
	}
	c.install(r.h, r.key, &held[V]{absent: true}, len(null), min(r.co.l1ttl, ttl), degraded, s)
}

// fromRedis decodes a value read from Redis, which has left to live
// there, and keeps it (or the absence it records) in-process, fenced by s.
func (c *Cache[V]) fromRedis(r *read[V], s local.Stamp, data []byte, left time.Duration) (*held[V], found) {
	v, f := c.decode(r.key, data)
	var hd *held[V]
	switch f {
	case foundValue:
		hd = &held[V]{v: v, fresh: c.freshFor(left)}
	case foundAbsent:
		c.counters.negativeHits.inc()
		hd = &held[V]{absent: true}
	default:
		return nil, f
	}
	if !r.co.noL1 {
		c.install(r.h, r.key, hd, len(data), l1TTLFor(r.co.l1ttl, left), false, s)
	}
	return hd, f
}

// encode encodes v; a panicking codec (or MarshalJSON) is an error
// wrapping ErrLoaderPanic.
func (c *Cache[V]) encode(key string, v V) (data []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, c.panicked(p)
		}
	}()
	data, err = c.base.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("tiered: encode %s: %w", key, err)
	}
	return data, nil
}

// seal returns what a value encoded as plain is stored as in Redis:
// compressed and encrypted as the cache says, within MaxValueBytes.
func (c *Cache[V]) seal(key string, plain []byte) ([]byte, error) {
	stored, err := c.env.Seal(nil, key, plain)
	if err != nil {
		if errors.Is(err, envelope.ErrTooLarge) {
			c.counters.tooLarge.inc()
			err = fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return nil, fmt.Errorf("tiered: %s: %w", key, err)
	}
	if len(stored) > c.c.opts.MaxValueBytes {
		c.counters.tooLarge.inc()
		return nil, fmt.Errorf("tiered: %s: %w: %d bytes stored, limit %d", key, ErrTooLarge, len(stored), c.c.opts.MaxValueBytes)
	}
	return stored, nil
}

// unmarshal decodes data into v; a panicking codec is an error.
func (c *Cache[V]) unmarshal(data []byte, v *V) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("codec panicked: %v", p)
		}
	}()
	return c.base.codec.Unmarshal(data, v)
}

// decode decodes a value read from Redis. JSON null is a cached absence.
// A value that does not decode is a miss, counted and logged, and stays in
// Redis: another service may have written it in a form this one cannot
// read, and its readers still can.
func (c *Cache[V]) decode(key string, data []byte) (V, found) {
	var v V
	if string(data) == null {
		return v, foundAbsent
	}
	plain, err := c.env.Open(nil, key, data)
	if err == nil {
		err = c.unmarshal(plain, &v)
	}
	if err == nil {
		return v, foundValue
	}
	c.counters.decodeErrors.inc()
	c.decodeLog.warn(c.c.opts.Logger, "tiered: value in Redis does not decode; read as a miss and left in place",
		"resource_type", c.resource, "key", key, "bytes", len(data), "error", err)
	var zero V
	return zero, foundNothing
}

// callFailed classifies the failure of a call to Redis made with the
// caller's context: the caller giving up is not Redis being unavailable.
func (c *Cache[V]) callFailed(ctx context.Context, op, key string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("tiered: %s %s: %w", op, key, ctx.Err())
	}
	c.redisError(op, err)
	return unavailable(op, key, err)
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
func (c *Cache[V]) Get(ctx context.Context, id string, opts ...Option) (V, error) {
	if c.c.debug(ctx) {
		start := time.Now()
		v, t, err := c.get(ctx, id, opts)
		c.logOp(ctx, "cache_get", t, start, err, opts)
		return v, err
	}
	v, _, err := c.get(ctx, id, opts)
	return v, err
}

func (c *Cache[V]) get(ctx context.Context, id string, opts []Option) (V, tier, error) {
	if c.c.closed.Load() {
		return *new(V), tierNone, ErrClosed
	}
	co := &c.base // a call with no options: the cache's own, not copied
	if len(opts) > 0 {
		resolved, err := c.resolve(atGet, opts)
		if err != nil {
			return *new(V), tierNone, err
		}
		co = &resolved
	}
	var buf [keyBufSize]byte
	key, h, hit, err := c.findWith(buf[:0], ctx, id, co)
	// No zero V on the way to a hit: a V can be large, and zeroing one
	// for nothing is a cost of every hit.
	switch {
	case err != nil:
		return *new(V), tierNone, err
	case hit != nil && hit.absent:
		return *new(V), tierL1, ErrNotFound
	case hit != nil:
		return hit.v, tierL1, nil
	}
	return c.getRemote(ctx, string(key), h, *co)
}

// lookup resolves the options of a call given at o, builds the key of id
// into buf and looks it up in the in-process tier, unless the call skips
// it (NoL1, Reload).
func (c *Cache[V]) lookup(buf []byte, ctx context.Context, id string, o site, opts []Option) (key []byte, h uint64, co call, hit *held[V], err error) {
	if co, err = c.resolve(o, opts); err != nil {
		return nil, 0, co, nil, err
	}
	key, h, hit, err = c.findWith(buf, ctx, id, &co)
	return key, h, co, hit, err
}

// find is lookup under resolved options. A hit may be a cached absence.
func (c *Cache[V]) find(buf []byte, ctx context.Context, id string, co call) (key []byte, h uint64, hit *held[V], err error) {
	return c.findWith(buf, ctx, id, &co)
}

// findWith is find with co by reference.
func (c *Cache[V]) findWith(buf []byte, ctx context.Context, id string, co *call) (key []byte, h uint64, hit *held[V], err error) {
	if key, err = c.buildKey(buf, ctx, id, co); err != nil {
		return nil, 0, nil, err
	}
	h = c.c.hash(key)
	if co.noL1 || co.reload {
		return key, h, nil, nil
	}
	hit = c.l1Get(h, key)
	switch {
	case hit == nil:
	case hit.absent:
		c.counters.negativeHits.inc()
	default:
		c.counters.hitsL1.inc()
	}
	return key, h, hit, nil
}

// keyOf resolves the options of a call given at o and builds its key.
func (c *Cache[V]) keyOf(ctx context.Context, id string, o site, opts []Option) (key string, h uint64, co call, err error) {
	if co, err = c.resolve(o, opts); err != nil {
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
		c.counters.misses.inc()
		return zero, tierNone, ErrNotFound
	}
	r := &read[V]{key: key, h: h, co: co, s: c.stamp(h)}
	v, f, err := c.readRedis(ctx, r, r.s)
	switch {
	case err != nil:
		return zero, tierNone, c.callFailed(ctx, "get", key, err)
	case f == foundAbsent:
		return zero, tierL2, ErrNotFound
	case f != foundValue:
		c.counters.misses.inc()
		return zero, tierNone, ErrNotFound
	}
	return v, tierL2, nil
}
