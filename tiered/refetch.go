package tiered

import (
	"errors"
	"time"
)

// refetchConcurrency bounds the refetches of invalidated keys a Client
// runs at once (Options.RefetchInvalidated). Beyond it a reported change
// only drops the key, so a bulk write (a Warm of many keys that this
// process reads) cannot flood Redis with reads.
const refetchConcurrency = 64

// errNotRefetched ends a refetch that found no value to keep: a read that
// joined it goes on to load.
var errNotRefetched = errors.New("tiered: nothing refetched")

// refetcher is a value the in-process tier held that can be read again
// from Redis by the cache that installed it.
type refetcher interface {
	refetch(key string, h uint64)
}

func (hd *held[V]) refetch(key string, h uint64) {
	if hd.owner != nil {
		hd.owner.refetch(key, h)
	}
}

// dropAndRefetch drops key (hash h), which Redis reported changed, and if
// this process had served its copy since caching it, reads it again in
// the background, within refetchConcurrency.
func (c *Client) dropAndRefetch(h uint64, key string) {
	v, read := c.l1.InvalidateRead(h, key)
	if !read {
		return
	}
	r, ok := v.(refetcher)
	if !ok {
		return
	}
	select {
	case c.refetching <- struct{}{}:
	default:
		c.counters.refetchesSkipped.inc()
		return
	}
	if !c.enter() {
		<-c.refetching
		return
	}
	go func() {
		defer func() {
			c.leave()
			<-c.refetching
		}()
		r.refetch(key, h)
	}()
}

// refetch reads key (hash h) from Redis again after a change was reported,
// for the reads to come. It is a read like any other: stamped after the
// change was applied, so an install it makes is fenced against any later
// one, and run as the flight of that stamp, so that a read that misses
// meanwhile joins it instead of reading Redis itself.
func (c *Cache[V]) refetch(key string, h uint64) {
	r := &read[V]{key: key, h: h, co: c.base, s: c.stamp(h)}
	ch := c.group.DoChan(flightKey(key, r.s, false), func() (v any, err error) {
		defer c.recoverFlight(&err)
		return c.refetchFlight(r)
	})
	<-ch
	c.counters.refetches.inc()
}

// refetchFlight is a refetch's read: a value or a cached absence found in
// Redis is kept and shared with the reads that joined; anything else
// (nothing there, a value this cache cannot decode, Redis failing) is
// errNotRefetched, and those reads go on alone.
func (c *Cache[V]) refetchFlight(r *read[V]) (any, error) {
	start := time.Now()
	data, ttl, err := c.c.store.Get(c.c.ctx, r.key)
	c.c.metrics.observe(opGet, start)
	if err != nil {
		return nil, errNotRefetched
	}
	hd, f := c.fromRedis(r, r.s, data, ttl)
	switch f {
	case foundValue:
		return l2Hit[V]{hd.v}, nil
	case foundAbsent:
		return nil, ErrNotFound
	}
	return nil, errNotRefetched
}
