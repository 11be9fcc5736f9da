package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/store"
)

// loader is a load function with the id it is called with.
type loader[V any] struct {
	fn func(context.Context, string) (V, error)
	id string
}

func (l loader[V]) call(ctx context.Context) (V, error) { return l.fn(ctx, l.id) }

// read is what one read that missed in-process carries down the slow path.
type read[V any] struct {
	key string
	h   uint64
	co  call
	s   local.Stamp // the key's stamp when the read began: it fences installs
	ld  loader[V]

	fresh int64 // when the value kept stops being fresh (Unix ns); 0: never
	took  int64 // how long its load took, in nanoseconds; 0: not loaded here

	// absent says Redis found no key when the load's lease was taken. Then
	// one report of a change to it during the load is that read's own
	// doing (it expired the key lazily, and Redis reports expiries), or a
	// write the fill's only-if-absent check refuses anyway.
	absent bool
}

// unchanged reports whether nothing that makes a load stale happened to
// r's key since loading was stamped: no report of a change, or, when the
// key was absent, at most one (see read.absent). A refresh allows none.
func (c *Cache[V]) unchanged(r *read[V], loading local.Stamp) bool {
	var allowed uint64
	if r.absent && !r.co.reload {
		allowed = 1
	}
	return c.stamp(r.h).Within(loading, allowed)
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
// A read never shares a load that began before a write of its key returned
// in this process, or before an invalidation of it arrived here. A value
// loaded while the key was written or deleted elsewhere is returned but
// never cached. If Redis fails, Fetch still answers from the loader,
// keeping the value in-process only for DegradedTTL. A loader error is
// returned as is and nothing is cached; a panic in the loader or the codec
// becomes an error wrapping ErrLoaderPanic for every caller sharing the
// load.
//
// load gets the id it is to load, so that a function or method value
// serves every id: a closure that captures variables escapes to the load's
// goroutine and costs an allocation even on a hit.
func (c *Cache[V]) Fetch(ctx context.Context, id string, load func(ctx context.Context, id string) (V, error), opts ...Option) (V, error) {
	if load == nil {
		var zero V
		return zero, errors.New("tiered: Fetch with a nil load function")
	}
	return c.fetch(ctx, id, loader[V]{fn: load, id: id}, opts)
}

// Wrap returns load with caching in front of it (the template's decorator):
// each call is a Fetch of id with load(ctx, id) as the loader and opts as
// the call options. Calls that hit do not allocate.
func (c *Cache[V]) Wrap(load func(ctx context.Context, id string) (V, error), opts ...Option) func(ctx context.Context, id string) (V, error) {
	if load == nil {
		return func(context.Context, string) (V, error) {
			var zero V
			return zero, errors.New("tiered: Wrap of a nil load function")
		}
	}
	opts = append([]Option(nil), opts...)
	return func(ctx context.Context, id string) (V, error) {
		return c.fetch(ctx, id, loader[V]{fn: load, id: id}, opts)
	}
}

func (c *Cache[V]) fetch(ctx context.Context, id string, ld loader[V], opts []Option) (V, error) {
	if c.c.debug(ctx) {
		start := time.Now()
		v, t, err := c.fetchTier(ctx, id, ld, opts)
		c.logOp(ctx, "cache_fetch", t, start, err, opts)
		return v, err
	}
	v, _, err := c.fetchTier(ctx, id, ld, opts)
	return v, err
}

func (c *Cache[V]) fetchTier(ctx context.Context, id string, ld loader[V], opts []Option) (V, tier, error) {
	var zero V
	if c.c.closed.Load() {
		return zero, tierNone, ErrClosed
	}
	var buf [keyBufSize]byte
	key, h, co, hit, err := c.lookup(buf[:0], ctx, id, atFetch, opts)
	switch {
	case err != nil:
		return zero, tierNone, err
	case hit == nil:
		return c.fetchShared(ctx, string(key), h, ld, co)
	case hit.absent:
		return zero, tierL1, ErrNotFound
	}
	if c.fresh.on() && c.refreshDue(hit) {
		c.refreshInBackground(string(key), h, ld, co)
	}
	return hit.v, tierL1, nil
}

// l2Hit marks a flight's result that came from Redis rather than a load.
type l2Hit[V any] struct{ v V }

// fetchShared joins or starts this process's load of key and waits for it
// as long as ctx allows. Flights are keyed by the key's stamp as well: a
// local write or an applied invalidation moves the stamp, so a read that
// starts after either never joins a flight that began before it.
func (c *Cache[V]) fetchShared(ctx context.Context, key string, h uint64, ld loader[V], co call) (V, tier, error) {
	var zero V
	r := &read[V]{key: key, h: h, co: co, s: c.stamp(h), ld: ld}
	fk := flightKey(key, r.s, co.reload)
	for {
		leader := false
		ch := c.group.DoChan(fk, func() (v any, err error) {
			leader = true
			// singleflight re-panics on a new goroutine, which nothing can
			// recover: every panic of the load path ends here as an error.
			defer c.recoverFlight(&err)
			if !c.c.enter() {
				return nil, ErrClosed
			}
			defer c.c.leave()
			return c.flight(ctx, r)
		})
		select {
		case res := <-ch:
			// The receive orders this read after the flight, which wrote
			// leader if it was this caller's.
			switch {
			case errors.Is(res.Err, errNotRefetched):
				continue // a refetch found nothing to share: load
			case !leader:
				c.counters.coalesced.inc()
			}
			if res.Err != nil {
				return zero, tierNone, res.Err
			}
			if hit, ok := res.Val.(l2Hit[V]); ok {
				return hit.v, tierL2, nil
			}
			v, _ := res.Val.(V) // comma-ok: a nil interface value is a valid V
			return v, tierNone, nil
		case <-ctx.Done():
			return zero, tierNone, fmt.Errorf("tiered: fetch %s: %w", key, ctx.Err())
		}
	}
}

// flightKey is the key of the flight of a read of key stamped s: a read
// joins only a flight of its own generation, and a reload (Reload) only
// another reload.
func flightKey(key string, s local.Stamp, reload bool) string {
	fk := make([]byte, 0, len(key)+24)
	if reload {
		// A reload must not be served by an ordinary read's flight.
		fk = append(fk, "refresh\x00"...)
	}
	return string(s.AppendTo(append(append(fk, key...), 0)))
}

// recoverFlight, deferred in a flight, turns a panic into a *PanicError.
func (c *Cache[V]) recoverFlight(err *error) {
	if p := recover(); p != nil {
		*err = c.panicked(p)
	}
}

func (c *Cache[V]) panicked(p any) error {
	c.c.opts.Logger.Error("tiered: load panicked", "resource_type", c.resource, "panic", p)
	return &PanicError{Value: p, Stack: debug.Stack()}
}

// flight is the one load of a key in this process for one stamp. Its
// first call to Redis reads the key or, on a miss, takes the lease on it
// (lock.Leaser.Get): a cold key costs that round trip and the fill's.
func (c *Cache[V]) flight(parent context.Context, r *read[V]) (any, error) {
	ctx, cancel := c.c.loadContext(parent)
	defer cancel()
	if c.c.store == nil {
		return c.loadLocal(ctx, r, false)
	}
	if r.co.reload {
		return c.leasedLoad(ctx, r, false)
	}
	start := time.Now()
	data, ttl, lease, err := c.c.leases.Get(ctx, r.key)
	c.c.metrics.observe(opGet, start)
	switch {
	case err == nil && lease == nil:
		hd, f := c.fromRedis(r, r.s, data, ttl)
		switch f {
		case foundValue:
			c.counters.hitsL2.inc()
			if c.fresh.on() && c.refreshDue(hd) {
				c.refreshInBackground(r.key, r.h, r.ld, r.co)
			}
			return l2Hit[V]{hd.v}, nil
		case foundAbsent:
			return nil, ErrNotFound
		}
		c.counters.misses.inc()
		return c.leasedLoad(ctx, r, false) // a value this cache cannot decode
	case err == nil:
		c.counters.misses.inc()
		c.counters.leasesWon.inc()
		r.absent = true
		return c.loadAndFill(ctx, r, lease, false)
	case errors.Is(err, lock.ErrHeld):
		c.counters.misses.inc()
		return c.leasedLoad(ctx, r, true)
	}
	c.redisError("get", err)
	return c.loadLocal(ctx, r, true)
}

// readRedis reads the key from Redis and keeps a value that decodes
// in-process, fenced by s. A value that does not decode is a miss.
func (c *Cache[V]) readRedis(ctx context.Context, r *read[V], s local.Stamp) (V, found, error) {
	var zero V
	start := time.Now()
	data, ttl, err := c.c.store.Get(ctx, r.key)
	c.c.metrics.observe(opGet, start)
	r.absent = errors.Is(err, store.ErrMiss)
	if err != nil {
		if r.absent {
			err = nil
		}
		return zero, foundNothing, err
	}
	hd, f := c.fromRedis(r, s, data, ttl)
	if f != foundValue {
		return zero, f, nil
	}
	c.counters.hitsL2.inc()
	return hd.v, f, nil
}

// l1TTLFor is how long a value read from Redis may stay in-process: no
// longer than it has left in Redis (left; zero when it does not expire),
// since Redis may report the expiry late or never (it expires keys lazily
// or by sampling).
func l1TTLFor(l1ttl, left time.Duration) time.Duration {
	if left > 0 {
		return min(l1ttl, left)
	}
	return l1ttl
}

// leasedLoad loads the key under the cross-process lease, or waits for
// the process that holds it (from the start when held). A refresh takes
// the lease from whoever holds it: its value must win over any load that
// began before it.
func (c *Cache[V]) leasedLoad(ctx context.Context, r *read[V], held bool) (any, error) {
	deadline := time.Now().Add(c.c.opts.LeaseWait)
	for {
		if !held {
			var lease *lock.Lease
			var err error
			if r.co.reload {
				lease, err = c.c.leases.Take(ctx, r.key)
			} else {
				lease, err = c.c.leases.Acquire(ctx, r.key)
			}
			switch {
			case err == nil:
				c.counters.leasesWon.inc()
				// A fill may have landed between the read and this lease.
				return c.loadAndFill(ctx, r, lease, !r.co.reload)
			case !errors.Is(err, lock.ErrHeld):
				c.redisError("lease", err)
				return c.loadLocal(ctx, r, true)
			}
		}
		held = false
		c.counters.leasesWaited.inc()
		v, f, err := c.waitForFill(ctx, r, deadline)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("tiered: waiting for the load of %s: %w", r.key, ctx.Err())
		case err != nil:
			c.redisError("wait", err)
			return c.loadLocal(ctx, r, true)
		case f == foundAbsent:
			return nil, ErrNotFound
		case f == foundValue:
			// Served by another process's load: a miss for this one.
			return v, nil
		case time.Now().After(deadline):
			// The holder is slow or gone. Load without caching, under a
			// load timeout of its own: the holder's fill, or the next
			// lease, will cache.
			c.counters.waitExpired.inc()
			lctx, cancel := c.c.loadContext(ctx)
			defer cancel()
			return c.load(lctx, r)
		}
		// The lease went away without a value (a failed load or a delete):
		// try to take it.
	}
}

// loadAndFill runs the loader under lease and stores the result if the
// lease still holds and, unless this is a refresh, nobody else wrote the
// key meanwhile. With reread, it first reads the key again: another
// process may have filled it between an earlier read and this lease.
func (c *Cache[V]) loadAndFill(ctx context.Context, r *read[V], lease *lock.Lease, reread bool) (any, error) {
	if reread {
		v, f, err := c.readRedis(ctx, r, r.s)
		switch {
		case f == foundValue:
			c.release(ctx, lease)
			return l2Hit[V]{v}, nil
		case f == foundAbsent:
			c.release(ctx, lease)
			return nil, ErrNotFound
		case err != nil:
			// Redis failed after granting the lease: do not wait on it
			// again for the fill; the lease expires on its own.
			c.redisError("get", err)
			return c.loadLocal(ctx, r, true)
		}
	}
	// Any change to the key from here on (another service's write, which
	// takes no lease, or its expiry) moves the stamp when Redis reports it:
	// the loaded value may then be older than what was written, and is
	// not stored.
	loading := c.stamp(r.h)
	v, err := c.load(ctx, r)
	if err != nil {
		if c.fresh.negTTL > 0 && errors.Is(err, ErrNotFound) && c.unchanged(r, loading) {
			c.fill(ctx, r, lease, v, nil, true)
			return nil, err
		}
		c.release(ctx, lease)
		return nil, err
	}
	data, err := c.encode(r.key, v)
	if err != nil {
		c.release(ctx, lease)
		return c.notCached(v, r.key, err)
	}
	if !c.unchanged(r, loading) {
		c.release(ctx, lease)
		c.counters.fillsRefused.inc()
		return v, nil
	}
	c.fill(ctx, r, lease, v, data, false)
	return v, nil
}

// fill stores v, encoded as data, or with absent the key's absence, under
// lease, and keeps it in-process if it was stored.
func (c *Cache[V]) fill(ctx context.Context, r *read[V], lease *lock.Lease, v V, data []byte, absent bool) {
	// A refresh replaces a value this process may hold: stamp the stripe
	// now, and install only if no other write to it comes in meanwhile.
	before := c.stamp(r.h)
	channel, msg := c.c.fillNotice(r.key, r.co.reload)
	var ttl time.Duration
	stored := []byte(null) // an absence is never sealed: readers see null
	if absent {
		ttl = c.c.jitter(c.fresh.negTTL)
	} else {
		r.fresh, ttl = c.lifetimes(r.co.ttl)
		var err error
		if stored, err = c.seal(r.key, data); err != nil {
			c.release(ctx, lease)
			c.c.opts.Logger.Warn("tiered: loaded value not cached", "key", r.key, "error", err)
			return
		}
	}
	keep := func(s local.Stamp) {
		if absent {
			c.keepAbsent(r, ttl, false, s)
		} else {
			c.keep(r, v, data, false, s)
		}
	}
	if r.co.reload {
		c.c.recent.add(r.key) // a refresh overwrites: a failover may lose it
	}
	start := time.Now()
	err := lease.Fill(ctx, stored, ttl, r.co.reload, channel, msg)
	c.c.metrics.observe(opSet, start)
	c.c.wake.wake(r.h)
	switch {
	case errors.Is(err, lock.ErrLost):
		c.counters.leaseLost.inc()
	case errors.Is(err, lock.ErrExists):
		// Another writer (another service) stored the key meanwhile, or
		// holds a value this cache cannot decode: theirs stays. Ours was
		// loaded fresh, so it may serve here, fenced like any install.
		c.counters.fillsRefused.inc()
		if !absent {
			keep(r.s)
		}
	case err != nil:
		// Unknown whether it was stored, or whether a delete raced it:
		// keep it out of this process. A refresh may have left peers
		// with the old value: invalidate them when Redis answers.
		c.redisError("fill", err)
		if r.co.reload {
			c.c.l1Invalidate(r.h)
			c.c.deferInvalidation(r.key)
		}
	case r.co.reload:
		c.replaceLocalMany([]uint64{r.h}, []local.Stamp{before}, func(_ int, after local.Stamp) { keep(after) })
	default:
		keep(r.s)
	}
}

// notCached returns a loaded value that could not be encoded, uncached;
// a codec panic is an error for every caller.
func (c *Cache[V]) notCached(v V, key string, err error) (any, error) {
	if errors.Is(err, ErrLoaderPanic) {
		return nil, err
	}
	c.c.opts.Logger.Warn("tiered: loaded value not cached", "key", key, "error", err)
	return v, nil
}

// release frees a lease whatever became of the context of the load that
// held it (cancelled by Close, or out of time): a lease left behind would
// hold every process's loads of the key for LeaseTTL.
func (c *Cache[V]) release(ctx context.Context, lease *lock.Lease) {
	if err := lease.Release(context.WithoutCancel(ctx)); err != nil {
		c.redisError("release", err)
	}
}

// waitForFill waits until the key has a value in Redis, its lease is gone,
// or deadline passes, re-reading Redis on every fill or invalidation of
// the key and on a backoff in case a notice is lost. Each read installs
// under a stamp taken just before it: the notice that woke it moved the
// read's first stamp.
func (c *Cache[V]) waitForFill(ctx context.Context, r *read[V], deadline time.Time) (v V, f found, err error) {
	const minPoll, maxPoll = 5 * time.Millisecond, 100 * time.Millisecond
	poll := minPoll
	leaseKey := lock.Key(r.key)
	for {
		woken := c.c.wake.wait(r.h) // before the read, so no notice is missed
		s := c.stamp(r.h)
		data, ttl, held, err := c.c.store.GetWithLease(ctx, r.key, leaseKey)
		if err != nil {
			return v, foundNothing, err
		}
		if data != nil {
			// A value this cache cannot decode (foundNothing): load it
			// ourselves.
			hd, f := c.fromRedis(r, s, data, ttl)
			if f == foundValue {
				v = hd.v
			}
			return v, f, nil
		}
		left := time.Until(deadline)
		if !held || left <= 0 {
			return v, foundNothing, nil
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-woken:
		case <-t.C:
			poll = min(2*poll, maxPoll)
		case <-ctx.Done():
			t.Stop()
			return v, foundNothing, ctx.Err()
		}
		t.Stop()
	}
}

// loadLocal serves a load without Redis: in L1-only mode, or degraded
// (Redis failed), when the value stays in-process only briefly.
func (c *Cache[V]) loadLocal(ctx context.Context, r *read[V], degraded bool) (any, error) {
	if degraded {
		c.counters.degradedLoads.inc()
	}
	v, err := c.load(ctx, r)
	if err != nil {
		if c.fresh.negTTL > 0 && errors.Is(err, ErrNotFound) && !degraded {
			c.keepAbsent(r, c.c.jitter(c.fresh.negTTL), false, r.s)
		}
		return nil, err
	}
	if c.noL1 || r.co.noL1 {
		return v, nil
	}
	data, err := c.encode(r.key, v)
	if err != nil {
		return c.notCached(v, r.key, err)
	}
	r.fresh = time.Now().Add(r.co.ttl).UnixNano()
	c.keep(r, v, data, degraded, r.s)
	return v, nil
}

// load calls r's loader, turning a panic into an error, and notes how long
// it took.
func (c *Cache[V]) load(ctx context.Context, r *read[V]) (v V, err error) {
	c.counters.loads.inc()
	start := time.Now()
	defer c.endLoad(start, &err)
	if v, err = r.ld.call(ctx); err == nil {
		took := time.Since(start)
		r.took = int64(took)
		c.noteLoad(took)
	}
	return v, err
}

// endLoad, deferred around a loader call, turns its panic into an error
// and records the load.
func (c *Cache[V]) endLoad(start time.Time, err *error) {
	if p := recover(); p != nil {
		*err = c.panicked(p)
	}
	c.c.metrics.observe(opLoad, start)
	if *err != nil {
		c.counters.loadErrors.inc()
	}
}
