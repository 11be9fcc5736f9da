package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tieredcache/tieredcache/local"
	"github.com/tieredcache/tieredcache/lock"
	"github.com/tieredcache/tieredcache/remote"
)

// loader is either a loader of one key or a loader by id (Wrap's), so that
// both reach the slow path without a closure per call.
type loader[V any] struct {
	fn   func(context.Context) (V, error)
	byID func(context.Context, string) (V, error)
	id   string
}

func (l loader[V]) call(ctx context.Context) (V, error) {
	if l.byID != nil {
		return l.byID(ctx, l.id)
	}
	return l.fn(ctx)
}

// Fetch returns the value of id, loading it with load on a miss
// (cache-aside), with two guards against a stampede of loads:
//
//   - in this process, concurrent callers for one key share one load, and
//     each waits only as long as its own ctx allows; the load itself runs
//     detached from any caller, bounded by LoadTimeout;
//   - across processes, the loader runs under a lease in Redis: a process
//     that finds the lease held waits for the holder to fill the key, up
//     to LeaseWait.
//
// A value loaded while the key was written or deleted elsewhere is returned
// but never cached. If Redis fails, Fetch still answers from the loader,
// keeping the value in-process only for DegradedTTL. A loader error is
// returned as is and nothing is cached; a loader panic becomes an error
// wrapping ErrLoaderPanic for every caller sharing the load.
//
// The load function escapes to the load's goroutine, so a closure that
// captures variables costs an allocation even on a hit; Wrap avoids it.
func (c *Cache[V]) Fetch(ctx context.Context, id string, load func(ctx context.Context) (V, error), opts ...CallOption) (V, error) {
	if load == nil {
		var zero V
		return zero, errors.New("tiered: Fetch with a nil load function")
	}
	return c.fetch(ctx, id, loader[V]{fn: load}, opts)
}

// Wrap returns load with caching in front of it (the template's decorator):
// each call is a Fetch of id with load(ctx, id) as the loader and opts as
// the call options. Calls that hit do not allocate.
func (c *Cache[V]) Wrap(load func(ctx context.Context, id string) (V, error), opts ...CallOption) func(ctx context.Context, id string) (V, error) {
	if load == nil {
		return func(context.Context, string) (V, error) {
			var zero V
			return zero, errors.New("tiered: Wrap of a nil load function")
		}
	}
	opts = append([]CallOption(nil), opts...)
	return func(ctx context.Context, id string) (V, error) {
		return c.fetch(ctx, id, loader[V]{byID: load, id: id}, opts)
	}
}

func (c *Cache[V]) fetch(ctx context.Context, id string, ld loader[V], opts []CallOption) (V, error) {
	if c.c.debug(ctx) {
		start := time.Now()
		v, t, err := c.fetchTier(ctx, id, ld, opts)
		c.logOp(ctx, "cache_fetch", t, start, err, opts)
		return v, err
	}
	v, _, err := c.fetchTier(ctx, id, ld, opts)
	return v, err
}

func (c *Cache[V]) fetchTier(ctx context.Context, id string, ld loader[V], opts []CallOption) (V, tier, error) {
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
		return c.fetchShared(ctx, string(key), h, ld, c.base)
	}
	key, h, co, hit, err := c.lookupWith(buf[:0], ctx, id, opts)
	switch {
	case err != nil:
		return zero, tierNone, err
	case hit != nil:
		return *hit, tierL1, nil
	}
	return c.fetchShared(ctx, string(key), h, ld, co)
}

// l2Hit marks a flight's result that came from Redis rather than a load.
type l2Hit[V any] struct{ v V }

// fetchShared joins or starts this process's load of key and waits for it
// as long as ctx allows.
func (c *Cache[V]) fetchShared(ctx context.Context, key string, h uint64, ld loader[V], co call) (V, tier, error) {
	var zero V
	flightKey := key
	if co.refresh {
		// A refresh must not be served by an ordinary read's flight.
		flightKey = "refresh\x00" + key
	}
	leader := false
	ch := c.group.DoChan(flightKey, func() (any, error) {
		leader = true
		if !c.c.enter() {
			return nil, ErrClosed
		}
		defer c.c.leave()
		return c.flight(ctx, key, h, ld, co)
	})
	select {
	case r := <-ch:
		// The receive orders this read after the flight, which wrote leader
		// if it was this caller's.
		if !leader {
			c.counters.coalesced.inc()
		}
		if r.Err != nil {
			return zero, tierNone, r.Err
		}
		if hit, ok := r.Val.(l2Hit[V]); ok {
			return hit.v, tierL2, nil
		}
		v, _ := r.Val.(V) // comma-ok: a nil interface value is a valid V
		return v, tierNone, nil
	case <-ctx.Done():
		return zero, tierNone, fmt.Errorf("tiered: fetch %s: %w", key, ctx.Err())
	}
}

// flight is the one load of key in this process.
func (c *Cache[V]) flight(parent context.Context, key string, h uint64, ld loader[V], co call) (any, error) {
	ctx, cancel := c.c.loadContext(parent)
	defer cancel()
	s := c.stamp(h)
	if c.c.store == nil {
		v, err := c.load(ctx, ld)
		if err != nil {
			return nil, err
		}
		c.installLoaded(h, key, v, co, false, s)
		return v, nil
	}
	if !co.refresh {
		start := time.Now()
		data, err := c.c.store.Get(ctx, key)
		c.c.metrics.observe(opGet, start)
		switch {
		case err == nil:
			if v, ok := c.decode(ctx, key, data); ok {
				c.counters.hitsL2.inc()
				c.install(h, key, v, len(data), co.l1ttl, false, s)
				return l2Hit[V]{v}, nil
			}
		case !errors.Is(err, remote.ErrMiss):
			c.redisError("get", err)
			return c.degradedLoad(ctx, key, h, ld, co, s)
		}
		c.counters.misses.inc()
	}
	return c.leasedLoad(ctx, key, h, ld, co, s)
}

// leasedLoad loads key under the cross-process lease, or waits for the
// process that holds it.
func (c *Cache[V]) leasedLoad(ctx context.Context, key string, h uint64, ld loader[V], co call, s local.Stamp) (any, error) {
	deadline := time.Now().Add(c.c.opts.LeaseWait)
	for {
		lease, err := c.c.leases.Acquire(ctx, key)
		switch {
		case err == nil:
			c.counters.leasesWon.inc()
			return c.loadAndFill(ctx, key, h, lease, ld, co, s)
		case errors.Is(err, lock.ErrHeld) && co.refresh:
			// Whoever holds the lease is loading a fresh value and will
			// cache it; waiting could return the value being replaced.
			return c.load(ctx, ld)
		case errors.Is(err, lock.ErrHeld):
			c.counters.leasesWaited.inc()
			v, found, err := c.waitForFill(ctx, key, h, deadline, co, s)
			switch {
			case err != nil && ctx.Err() != nil:
				return nil, fmt.Errorf("tiered: waiting for the load of %s: %w", key, ctx.Err())
			case err != nil:
				c.redisError("wait", err)
				return c.degradedLoad(ctx, key, h, ld, co, s)
			case found:
				// Served by another process's load: a miss for this one.
				return v, nil
			case time.Now().After(deadline):
				// The holder is slow or gone. Load without caching, under
				// a load timeout of its own: the holder's fill, or the
				// next lease, will cache.
				c.counters.waitExpired.inc()
				lctx, cancel := c.c.loadContext(ctx)
				defer cancel()
				return c.load(lctx, ld)
			}
			// The lease went away without a value (a failed load or a
			// delete): try to take it.
		default:
			c.redisError("lease", err)
			return c.degradedLoad(ctx, key, h, ld, co, s)
		}
	}
}

// loadAndFill runs the loader under lease and stores the result if the
// lease still holds.
func (c *Cache[V]) loadAndFill(ctx context.Context, key string, h uint64, lease *lock.Lease, ld loader[V], co call, s local.Stamp) (any, error) {
	// Another process may have filled the key between our read and our
	// lease; read again rather than load twice. A refresh wants a new value.
	if !co.refresh {
		data, err := c.c.store.Get(ctx, key)
		switch {
		case err == nil:
			if v, ok := c.decode(ctx, key, data); ok {
				c.release(ctx, lease)
				c.install(h, key, v, len(data), co.l1ttl, false, s)
				return l2Hit[V]{v}, nil
			}
		case !errors.Is(err, remote.ErrMiss):
			// Redis failed after granting the lease: do not wait on it
			// again for the fill; the lease expires on its own.
			c.redisError("get", err)
			return c.degradedLoad(ctx, key, h, ld, co, s)
		}
	}
	v, err := c.load(ctx, ld)
	if err != nil {
		c.release(ctx, lease)
		return nil, err
	}
	// A refresh replaces a value this process may hold: stamp the stripe
	// now, and install only if no other write to it comes in meanwhile.
	before := s
	if co.refresh {
		before = c.stamp(h)
	}
	data, err := c.encode(key, v)
	if err != nil {
		c.release(ctx, lease)
		c.c.opts.Logger.Warn("tiered: loaded value not cached", "key", key, "error", err)
		return v, nil
	}
	// A fill of an absent key only wakes waiters; a refresh replaces a
	// value other processes may hold, so it invalidates.
	kind := remote.KindFill
	if co.refresh {
		kind = remote.KindInvalidate
	}
	msg, err := c.c.bus.Encode(kind, key)
	if err != nil {
		c.release(ctx, lease)
		return v, nil
	}
	start := time.Now()
	stored, err := lease.Fill(ctx, data, co.ttl, c.c.opts.Channel, msg)
	c.c.metrics.observe(opSet, start)
	switch {
	case err != nil:
		// Unknown whether it was stored, or whether a delete raced it:
		// keep it out of this process. A refresh may have left peers
		// with the old value: invalidate them when Redis answers.
		c.redisError("fill", err)
		if co.refresh {
			c.c.l1Invalidate(h)
			c.c.deferInvalidation(key)
		}
	case !stored:
		c.counters.leaseLost.inc()
	case co.refresh:
		c.replaceLocal(h, key, v, len(data), co, before)
	default:
		c.install(h, key, v, len(data), co.l1ttl, false, s)
	}
	return v, nil
}

// replaceLocal puts a value this process just wrote in place of its copy:
// replaceLocalMany for one key.
func (c *Cache[V]) replaceLocal(h uint64, key string, v V, size int, co call, before local.Stamp) {
	c.replaceLocalMany([]uint64{h}, []local.Stamp{before}, func(_ int, after local.Stamp) {
		c.install(h, key, v, size, co.l1ttl, false, after)
	})
}

// release frees a lease whatever became of the context of the load that
// held it (cancelled by Close, or out of time): a lease left behind would
// hold every process's loads of the key for LeaseTTL.
func (c *Cache[V]) release(ctx context.Context, lease *lock.Lease) {
	if err := lease.Release(context.WithoutCancel(ctx)); err != nil {
		c.redisError("release", err)
	}
}

// waitForFill waits until key has a value in Redis, its lease is gone, or
// deadline passes, re-reading Redis on every fill notification and on a
// backoff in case a notification is lost.
func (c *Cache[V]) waitForFill(ctx context.Context, key string, h uint64, deadline time.Time, co call, s local.Stamp) (v V, found bool, err error) {
	const minPoll, maxPoll = 5 * time.Millisecond, 100 * time.Millisecond
	poll := minPoll
	leaseKey := lock.Key(key)
	for {
		woken := c.c.wake.wait(h) // before the read, so no fill is missed
		data, held, err := c.c.store.GetWithLease(ctx, key, leaseKey)
		if err != nil {
			return v, false, err
		}
		if data != nil {
			if v, ok := c.decode(ctx, key, data); ok {
				c.install(h, key, v, len(data), co.l1ttl, false, s)
				return v, true, nil
			}
			held = false // deleted as corrupt: take the lease and load
		}
		left := time.Until(deadline)
		if !held || left <= 0 {
			return v, false, nil
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-woken:
		case <-t.C:
			poll = min(2*poll, maxPoll)
		case <-ctx.Done():
			t.Stop()
			return v, false, ctx.Err()
		}
		t.Stop()
	}
}

// degradedLoad serves a load without Redis, caching in-process briefly.
func (c *Cache[V]) degradedLoad(ctx context.Context, key string, h uint64, ld loader[V], co call, s local.Stamp) (any, error) {
	c.counters.degradedLoads.inc()
	v, err := c.load(ctx, ld)
	if err != nil {
		return nil, err
	}
	c.installLoaded(h, key, v, co, true, s)
	return v, nil
}

// installLoaded caches a value that was not written to Redis; its size is
// that of its encoding.
func (c *Cache[V]) installLoaded(h uint64, key string, v V, co call, degraded bool, s local.Stamp) {
	if c.c.l1 == nil || c.cfg.noL1 {
		return
	}
	data, err := c.encode(key, v)
	if err != nil {
		c.c.opts.Logger.Warn("tiered: loaded value not cached", "key", key, "error", err)
		return
	}
	c.install(h, key, v, len(data), co.l1ttl, degraded, s)
}

// load calls the loader, turning a panic into an error.
func (c *Cache[V]) load(ctx context.Context, ld loader[V]) (v V, err error) {
	c.counters.loads.inc()
	defer c.endLoad(time.Now(), &err)
	return ld.call(ctx)
}

// endLoad, deferred around a loader call, turns its panic into an error
// and records the load.
func (c *Cache[V]) endLoad(start time.Time, err *error) {
	if r := recover(); r != nil {
		*err = &PanicError{Value: r, Stack: debug.Stack()}
		c.c.opts.Logger.Error("tiered: loader panicked", "resource_type", c.resource, "panic", r)
	}
	c.c.metrics.observe(opLoad, start)
	if *err != nil {
		c.counters.loadErrors.inc()
	}
}
