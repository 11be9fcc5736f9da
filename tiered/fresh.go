package tiered

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tieredcache/tieredcache/internal/lock"
)

// held is what the in-process tier keeps for a key: the value, or a cached
// absence, and what early refresh and serving stale need to know of it.
type held[V any] struct {
	v     V
	fresh int64 // when its TTL ends, in Unix nanoseconds; 0: never or unknown
	// tookMicros is how long its load took here, in microseconds (at most
	// about 35 minutes); 0: unknown. Narrow, with absent, so that owner
	// costs no memory: the struct stays in the allocation class it had.
	tookMicros int32
	absent     bool // a cached absence: reads return ErrNotFound
	// owner is the cache that installed it, which can read it again
	// (Options.RefetchInvalidated).
	owner *Cache[V]
}

// freshness is a cache's early refresh, stale serving and negative caching.
type freshness struct {
	beta     float64       // XFetch's β; 0: no early refresh
	staleFor time.Duration // how long past its TTL a value may be served
	negTTL   time.Duration // how long an absence is cached; 0: never
}

// found is what a read from Redis found.
type found uint8

const (
	foundNothing found = iota // absent, or a value this cache cannot decode
	foundValue
	foundAbsent // a cached absence
)

// on reports whether a hit must check the value's age.
func (f freshness) on() bool { return f.beta > 0 || f.staleFor > 0 }

// null is how a cached absence is stored: JSON null, which the Python
// template reads as a miss and never as data.
const null = "null"

// jitter returns d shortened by up to the Client's TTLJitter fraction, so
// values written together do not expire together.
func (c *Client) jitter(d time.Duration) time.Duration {
	if c.opts.TTLJitter <= 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*c.opts.TTLJitter*float64(d))
}

// lifetimes returns, for a value written now with TTL ttl, when it stops
// being fresh (Unix nanoseconds) and the TTL Redis gives it: its jittered
// TTL plus the window in which it may still be served stale.
func (c *Cache[V]) lifetimes(ttl time.Duration) (fresh int64, redisTTL time.Duration) {
	ttl = c.c.jitter(ttl)
	return time.Now().Add(ttl).UnixNano(), ttl + c.fresh.staleFor
}

// freshFor is when a value Redis says has left to live stops being fresh.
func (c *Cache[V]) freshFor(left time.Duration) int64 {
	if left <= 0 {
		return 0
	}
	return time.Now().Add(left - c.fresh.staleFor).UnixNano()
}

// refreshDue reports whether a hit on hd should start a refresh: the value
// is past its TTL (served stale meanwhile), or XFetch's draw says so as its
// TTL approaches (Vattani et al., VLDB 2015: now − δ·β·ln(U) ≥ expiry, δ
// the load's duration, U uniform in (0, 1]), which spreads the refreshes of
// a hot key's copies so that, across a fleet, one usually comes first and
// takes the lease.
func (c *Cache[V]) refreshDue(hd *held[V]) bool {
	if hd.fresh == 0 || hd.absent {
		return false
	}
	now := time.Now().UnixNano()
	if now >= hd.fresh {
		c.counters.staleServed.inc()
		return true
	}
	if c.fresh.beta == 0 {
		return false
	}
	delta := int64(hd.tookMicros) * int64(time.Microsecond)
	if delta == 0 {
		delta = c.loadNanos.Load()
	}
	if delta == 0 {
		delta = int64(defaultLoadGuess)
	}
	ahead := float64(delta) * c.fresh.beta * -math.Log(1-rand.Float64())
	return ahead >= float64(hd.fresh-now)
}

// defaultLoadGuess stands for a load's duration before any was measured.
const defaultLoadGuess = 10 * time.Millisecond

// refreshInBackground reloads key on its own goroutine while callers keep
// getting the current value. One refresh runs per key in this process,
// and, under the key's lease, one across processes: a process that finds
// the lease held leaves the refresh to its holder.
func (c *Cache[V]) refreshInBackground(key string, h uint64, ld loader[V], co call) {
	co.reload = true
	_ = c.group.DoChan("\x00refresh\x00"+key, func() (any, error) {
		if !c.c.enter() {
			return nil, ErrClosed
		}
		defer c.c.leave()
		defer func() {
			if p := recover(); p != nil {
				c.refreshFailed(key, c.panicked(p))
			}
		}()
		ctx, cancel := c.c.loadContext(context.Background())
		defer cancel()
		r := &read[V]{key: key, h: h, co: co, s: c.stamp(h), ld: ld}
		if c.c.store == nil {
			c.counters.refreshes.inc()
			_, err := c.loadLocal(ctx, r, false)
			c.refreshFailed(key, err)
			return nil, nil
		}
		lease, err := c.c.leases.Claim(ctx, key)
		switch {
		case errors.Is(err, lock.ErrHeld):
			return nil, nil // another process is loading or refreshing it
		case err != nil:
			c.redisError("lease", err)
			return nil, nil
		}
		c.counters.refreshes.inc()
		_, err = c.loadAndFill(ctx, r, lease, false)
		c.refreshFailed(key, err)
		return nil, nil
	})
}

// refreshFailed counts and logs a background refresh that failed; the
// current value keeps being served until it expires.
func (c *Cache[V]) refreshFailed(key string, err error) {
	if err == nil || errors.Is(err, ErrNotFound) {
		return
	}
	c.counters.refreshErrors.inc()
	c.refreshLog.warn(c.c.opts.Logger, "tiered: refresh failed; the current value is served until it expires",
		"resource_type", c.resource, "key", key, "error", err)
}

// micros returns nanos in whole microseconds, within an int32.
func micros(nanos int64) int32 {
	return int32(min(nanos/int64(time.Microsecond), math.MaxInt32))
}

// noteLoad folds a load's duration into the cache's running estimate.
func (c *Cache[V]) noteLoad(took time.Duration) {
	old := c.loadNanos.Load()
	if old == 0 {
		c.loadNanos.Store(int64(took))
		return
	}
	c.loadNanos.Store(old + (int64(took)-old)/8)
}
