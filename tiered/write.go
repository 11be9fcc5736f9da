package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/store"
	"github.com/tieredcache/tieredcache/internal/wire"
)

// Set stores v under id in Redis (for the cache's or the call's TTL) and in
// this process, and every other process drops its copy. The Redis write and
// the removal of any load lease on the key (so a load that started earlier
// cannot overwrite v) are atomic. If Redis fails, the local copy is dropped
// and the error wraps ErrUnavailable; the write is then fenced, so it can
// never land in Redis later over a newer write (see store.Store.Set).
//
// The in-process tier keeps its own copy of v (decoded from what was
// written) when V holds pointers, maps or slices, so changing v afterwards
// does not change what reads return.
func (c *Cache[V]) Set(ctx context.Context, id string, v V, opts ...Option) error {
	if c.c.debug(ctx) {
		start := time.Now()
		err := c.set(ctx, id, v, opts)
		c.logOp(ctx, "cache_set", tierNone, start, err, opts)
		return err
	}
	return c.set(ctx, id, v, opts)
}

func (c *Cache[V]) set(ctx context.Context, id string, v V, opts []Option) error {
	if c.c.closed.Load() {
		return ErrClosed
	}
	key, h, co, err := c.keyOf(ctx, id, atSet, opts)
	if err != nil {
		return err
	}
	data, err := c.encode(key, v)
	if err != nil {
		return err
	}
	stored, err := c.seal(key, data)
	if err != nil {
		return err
	}
	before := c.stamp(h)
	fresh, ttl := c.lifetimes(co.ttl)
	if c.c.store != nil {
		channel, msg := c.c.publishChannel(), []byte(nil)
		if channel != "" {
			if msg, err = c.c.bus.Encode(wire.KindInvalidate, key); err != nil {
				return fmt.Errorf("tiered: set %s: %w", key, err)
			}
		}
		c.c.recent.add(key)
		start := time.Now()
		err = c.c.store.Set(ctx, store.Entry{Key: key, Lease: lock.Key(key), Value: stored, TTL: ttl}, channel, msg)
		c.c.metrics.observe(opSet, start)
		c.c.wake.wake(h)
		if err != nil {
			// Applied or not, the write may have left stale copies around.
			c.c.l1Invalidate(h)
			c.c.deferInvalidation(key)
			return c.callFailed(ctx, "set", key, err)
		}
		if channel != "" {
			c.c.counters.published.inc()
		}
	}
	// Keep the new value locally unless another write to this key's stripe
	// came in while ours was in flight: then ours may not be the latest,
	// and the next read goes to Redis.
	r := &read[V]{key: key, h: h, co: co, fresh: fresh}
	c.replaceLocalMany([]uint64{h}, []local.Stamp{before}, func(_ int, after local.Stamp) {
		c.keep(r, v, data, false, after)
	})
	return nil
}

// Delete removes id from Redis and from this process and tells every other
// process to drop its copy. A load of the key under way anywhere will not
// cache what it loaded. The local copy is dropped even when Redis fails;
// the error (wrapping ErrUnavailable) then says other processes may still
// hold theirs.
func (c *Cache[V]) Delete(ctx context.Context, id string, opts ...Option) error {
	if c.c.debug(ctx) {
		start := time.Now()
		err := c.del(ctx, id, opts)
		c.logOp(ctx, "cache_delete", tierNone, start, err, opts)
		return err
	}
	return c.del(ctx, id, opts)
}

func (c *Cache[V]) del(ctx context.Context, id string, opts []Option) error {
	if c.c.closed.Load() {
		return ErrClosed
	}
	key, h, _, err := c.keyOf(ctx, id, atDelete, opts)
	if err != nil {
		return err
	}
	c.c.l1Invalidate(h)
	if c.c.store == nil {
		return nil
	}
	// Where Redis tracks the keys, it reports the delete itself, unless
	// the key was already absent with a load of it under way: the message
	// goes out then only, so processes sharing that load start anew.
	msg, err := c.c.bus.Encode(wire.KindInvalidate, key)
	if err != nil {
		return fmt.Errorf("tiered: delete %s: %w", key, err)
	}
	tracked := c.c.tracking.Load()
	c.c.recent.add(key)
	start := time.Now()
	err = c.c.store.Delete(ctx, key, lock.Key(key), c.c.opts.Channel, msg, tracked)
	c.c.metrics.observe(opDelete, start)
	c.c.wake.wake(h)
	// Again after the write: a load that read Redis before the delete and
	// installs after the first invalidation must fail too.
	c.c.l1Invalidate(h)
	if err != nil {
		c.c.deferInvalidation(key)
		return c.callFailed(ctx, "delete", key, err)
	}
	if !tracked {
		c.c.counters.published.inc()
	}
	return nil
}

// warmBatch and warmBatchBytes bound the values Warm writes per round
// trip: two hundred, and 1 MiB, which a loaded Redis writes well inside
// one OpTimeout.
const (
	warmBatch      = 200
	warmBatchBytes = 1 << 20
)

// Warm stores many values at once (the template's cache warming), in
// pipelined round trips of up to two hundred values, each followed by one
// invalidation message for its keys. It is not atomic: on error, earlier
// batches were written.
func (c *Cache[V]) Warm(ctx context.Context, values map[string]V, opts ...Option) error {
	if c.c.closed.Load() {
		return ErrClosed
	}
	co, err := c.resolve(atWarm, opts)
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
		stored, err := c.seal(key, data)
		if err != nil {
			return err
		}
		fresh, ttl := c.lifetimes(co.ttl)
		items = append(items, warmItem[V]{key: key, h: c.c.hash(kb), v: v, data: data, stored: stored, fresh: fresh, ttl: ttl})
	}
	// Batches of at most warmBatch values and warmBatchBytes bytes, so each
	// round trip fits comfortably in one OpTimeout.
	for start := 0; start < len(items); {
		end, size := start, 0
		for end < len(items) && end-start < warmBatch && (end == start || size+len(items[end].stored) <= warmBatchBytes) {
			size += len(items[end].stored)
			end++
		}
		if err := c.warmBatch(ctx, items[start:end], co); err != nil {
			return err
		}
		start = end
	}
	return nil
}

type warmItem[V any] struct {
	key    string
	h      uint64
	v      V
	data   []byte // encoded
	stored []byte // as Redis stores it
	fresh  int64
	ttl    time.Duration
}

func (c *Cache[V]) warmBatch(ctx context.Context, batch []warmItem[V], co call) error {
	before := make([]local.Stamp, len(batch))
	for i, it := range batch {
		before[i] = c.stamp(it.h)
	}
	if c.c.store != nil {
		entries := make([]store.Entry, len(batch))
		keyList := make([]string, len(batch))
		for i, it := range batch {
			entries[i] = store.Entry{Key: it.key, Lease: lock.Key(it.key), Value: it.stored, TTL: it.ttl}
			keyList[i] = it.key
		}
		channel, msgs := c.c.publishChannel(), [][]byte(nil)
		if channel != "" {
			var err error
			if msgs, err = c.c.bus.EncodeAll(wire.KindInvalidate, keyList...); err != nil {
				return fmt.Errorf("tiered: warm: %w", err)
			}
		}
		c.c.recent.add(keyList...)
		start := time.Now()
		err := c.c.store.SetMany(ctx, entries, channel, msgs)
		c.c.metrics.observe(opSet, start)
		c.c.wakeKeys(keyList...)
		if err != nil {
			for _, it := range batch {
				c.c.l1Invalidate(it.h)
			}
			c.c.deferInvalidation(keyList...)
			return c.callFailed(ctx, "set", fmt.Sprintf("(warm, %d keys)", len(batch)), err)
		}
		if channel != "" {
			c.c.counters.published.inc()
		}
	}
	hs := make([]uint64, len(batch))
	for i, it := range batch {
		hs[i] = it.h
	}
	c.replaceLocalMany(hs, before, func(i int, after local.Stamp) {
		c.keep(&read[V]{key: batch[i].key, h: batch[i].h, co: co, fresh: batch[i].fresh}, batch[i].v, batch[i].data, false, after)
	})
	return nil
}

// replaceLocalMany puts values this process just wrote in place of its
// copies: every key is invalidated, and install is called for each key no
// other write came in for meanwhile (local.Cache.Replace).
func (c *Cache[V]) replaceLocalMany(hs []uint64, before []local.Stamp, install func(i int, after local.Stamp)) {
	after, ok := c.c.l1.Replace(hs, before)
	for i := range hs {
		if ok[i] {
			install(i, after[i])
		}
	}
}
