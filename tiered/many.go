package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/wire"
)

// manyItem is one id of a FetchMany still to be served.
type manyItem struct {
	id, key string
	h       uint64
	s       local.Stamp
	absent  bool // Redis held no key (see read.absent)
}

// FetchMany returns the values of ids (the template's batch pattern): those
// in the in-process tier, then the rest from Redis in one round trip, then
// whatever is still missing from one call of loadMissing, which returns the
// values it found by id. Ids absent from the result were found nowhere.
//
// Loaded values are cached under cross-process leases taken in one round
// trip, so a value loaded while its key was written or deleted elsewhere is
// not cached. Unlike Fetch, a batch does not wait for loads under way in
// other processes, and concurrent batches in one process are not merged:
// loadMissing gets every id not found in either tier.
//
// On error the map is nil when the call was refused (a closed Client, an
// invalid option or id); otherwise it holds what was found before the
// error (in-process and Redis hits; nothing from a failed loadMissing),
// which callers may use or ignore.
func (c *Cache[V]) FetchMany(ctx context.Context, ids []string, loadMissing func(ctx context.Context, missing []string) (map[string]V, error), opts ...Option) (map[string]V, error) {
	if c.c.closed.Load() {
		return nil, ErrClosed
	}
	if loadMissing == nil {
		return nil, errors.New("tiered: FetchMany with a nil load function")
	}
	co, err := c.resolve(atFetchMany, opts)
	if err != nil {
		return nil, err
	}
	out := make(map[string]V, len(ids))
	pending := make([]manyItem, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		var buf [keyBufSize]byte
		kb, h, hit, err := c.find(buf[:0], ctx, id, co)
		switch {
		case err != nil:
			return nil, err
		case hit != nil:
			if !hit.absent {
				out[id] = hit.v
			}
			continue
		}
		pending = append(pending, manyItem{id: id, key: string(kb), h: h, s: c.stamp(h)})
	}
	if len(pending) == 0 {
		return out, nil
	}
	if c.c.store == nil {
		return out, c.loadManyLocal(ctx, pending, loadMissing, out, co, false)
	}
	if !co.reload {
		if pending, err = c.readMany(ctx, pending, out, co); err != nil {
			if ctx.Err() != nil {
				return out, fmt.Errorf("tiered: fetch many: %w", ctx.Err())
			}
			c.redisError("mget", err)
			return out, c.loadManyLocal(ctx, pending, loadMissing, out, co, true)
		}
		c.counters.misses.add(uint64(len(pending)))
		if len(pending) == 0 {
			return out, nil
		}
	}
	return out, c.loadManyLeased(ctx, pending, loadMissing, out, co)
}

// readMany serves what it can of pending from Redis and returns the rest.
func (c *Cache[V]) readMany(ctx context.Context, pending []manyItem, out map[string]V, co call) ([]manyItem, error) {
	start := time.Now()
	vals, err := c.c.store.MGet(ctx, keysOf(pending))
	c.c.metrics.observe(opGet, start)
	if err != nil {
		return pending, err
	}
	rest := pending[:0]
	for i, it := range pending {
		it.absent = vals[i] == nil
		if vals[i] != nil {
			hd, f := c.fromRedis(&read[V]{key: it.key, h: it.h, co: co}, it.s, vals[i], 0)
			switch f {
			case foundValue:
				c.counters.hitsL2.inc()
				out[it.id] = hd.v
				continue
			case foundAbsent:
				continue
			}
		}
		rest = append(rest, it)
	}
	return rest, nil
}

// loadManyLocal loads pending without Redis: in L1-only mode, or degraded.
func (c *Cache[V]) loadManyLocal(ctx context.Context, pending []manyItem, load func(context.Context, []string) (map[string]V, error), out map[string]V, co call, degraded bool) error {
	if degraded {
		c.counters.degradedLoads.inc()
	}
	loaded, err := c.loadBatch(ctx, pending, load)
	if err != nil {
		return err
	}
	for _, it := range pending {
		v, ok := loaded[it.id]
		if !ok {
			continue
		}
		out[it.id] = v
		if c.noL1 || co.noL1 {
			continue
		}
		if data, err := c.encode(it.key, v); err == nil {
			r := &read[V]{key: it.key, h: it.h, co: co, fresh: time.Now().Add(co.ttl).UnixNano()}
			c.keep(r, v, data, degraded, it.s)
		}
	}
	return nil
}

// loadManyLeased takes the leases of pending, loads them all, and caches
// those whose lease held.
func (c *Cache[V]) loadManyLeased(ctx context.Context, pending []manyItem, load func(context.Context, []string) (map[string]V, error), out map[string]V, co call) error {
	leases, err := c.c.leases.AcquireMany(ctx, keysOf(pending))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("tiered: fetch many: %w", ctx.Err())
		}
		c.redisError("lease", err)
		return c.loadManyLocal(ctx, pending, load, out, co, true)
	}
	// As in loadAndFill: a key changed while loading is not stored.
	loading := make([]local.Stamp, len(pending))
	for i, it := range pending {
		loading[i] = c.stamp(it.h)
	}
	loaded, err := c.loadBatch(ctx, pending, load)
	if err != nil {
		c.releaseMany(ctx, leases)
		return err
	}
	b := manyFills{pending: pending}
	var unused []*lock.Lease
	for i, it := range pending {
		v, ok := loaded[it.id]
		if ok {
			out[it.id] = v
		}
		if leases[i] == nil {
			continue
		}
		// An id loadMissing did not return is absent: with NegativeTTL,
		// that is cached too.
		absent := !ok && c.fresh.negTTL > 0
		data, stored, encErr := []byte(nil), []byte(null), error(nil)
		if ok {
			if data, encErr = c.encode(it.key, v); encErr == nil {
				stored, encErr = c.seal(it.key, data)
			}
		}
		r := &read[V]{h: it.h, co: co, absent: it.absent}
		if (!ok && !absent) || encErr != nil || !c.unchanged(r, loading[i]) {
			if (ok || absent) && encErr == nil {
				c.counters.fillsRefused.inc()
			}
			unused = append(unused, leases[i])
			continue
		}
		fresh, ttl := int64(0), c.c.jitter(c.fresh.negTTL)
		if ok {
			fresh, ttl = c.lifetimes(co.ttl)
		}
		b.fills = append(b.fills, lock.Fill{Lease: leases[i], Value: stored, TTL: ttl})
		b.plain = append(b.plain, data)
		b.items = append(b.items, i)
		b.fresh = append(b.fresh, fresh)
		b.absent = append(b.absent, absent)
	}
	c.releaseMany(ctx, unused)
	if len(b.fills) == 0 {
		return nil
	}
	return c.fillMany(ctx, b, out, co)
}

// manyFills are the fills of a FillMany: fills[j] stores pending[items[j]],
// fresh until fresh[j], or its absence where absent[j].
type manyFills struct {
	pending []manyItem
	fills   []lock.Fill
	items   []int
	plain   [][]byte // the encoded values, before sealing
	fresh   []int64
	absent  []bool
}

func (b manyFills) item(j int) manyItem { return b.pending[b.items[j]] }

// keepFilled installs what fill j stored, fenced by s.
func (c *Cache[V]) keepFilled(b manyFills, j int, out map[string]V, co call, s local.Stamp) {
	it := b.item(j)
	r := &read[V]{key: it.key, h: it.h, co: co, fresh: b.fresh[j]}
	if b.absent[j] {
		c.keepAbsent(r, b.fills[j].TTL, false, s)
		return
	}
	c.keep(r, out[it.id], b.plain[j], false, s)
}

// fillMany stores b's values under their leases and keeps in-process the
// ones it stored.
func (c *Cache[V]) fillMany(ctx context.Context, b manyFills, out map[string]V, co call) error {
	keys := make([]string, len(b.fills))
	before := make([]local.Stamp, len(b.fills))
	for j := range b.fills {
		keys[j], before[j] = b.item(j).key, c.stamp(b.item(j).h)
	}
	channel, msgs := c.c.publishChannel(), [][]byte(nil)
	if channel != "" {
		// A refresh replaces values other processes may hold: invalidate them.
		kind := wire.KindFill
		if co.reload {
			kind = wire.KindInvalidate
		}
		var err error
		if msgs, err = c.c.bus.EncodeAll(kind, keys...); err != nil {
			c.releaseMany(ctx, leasesOf(b.fills))
			return fmt.Errorf("tiered: fetch many: %w", err)
		}
	}
	if co.reload {
		c.c.recent.add(keys...)
	}
	start := time.Now()
	results, err := c.c.leases.FillMany(ctx, b.fills, co.reload, channel, msgs)
	c.c.metrics.observe(opSet, start)
	c.c.wakeKeys(keys...)
	if err != nil {
		c.redisError("fill", err)
		c.fillLog.warn(c.c.opts.Logger, "tiered: fetch many: values loaded but not cached", "resource_type", c.resource, "keys", len(b.fills), "error", err)
	}
	var replaced []int // indexes into b.fills, for a refresh
	var failed []*lock.Lease
	for j, res := range results {
		it := b.item(j)
		switch {
		case errors.Is(res, lock.ErrLost):
			c.counters.leaseLost.inc()
		case errors.Is(res, lock.ErrExists):
			c.counters.fillsRefused.inc()
			if !b.absent[j] {
				c.keepFilled(b, j, out, co, it.s)
			}
		case res != nil:
			// Unknown whether it was stored: keep it out of this process,
			// let the lease go, and for a refresh invalidate the others.
			failed = append(failed, b.fills[j].Lease)
			if co.reload {
				c.c.l1Invalidate(it.h)
				c.c.deferInvalidation(it.key)
			}
		case co.reload:
			replaced = append(replaced, j)
		default:
			c.keepFilled(b, j, out, co, it.s)
		}
	}
	c.releaseMany(ctx, failed)
	c.keepReplaced(b, replaced, before, out, co)
	return nil
}

// keepReplaced installs the values a refresh replaced, b.fills[j] for j in
// replaced, each only if nothing but the refresh's own write moved its key
// since before[j].
func (c *Cache[V]) keepReplaced(b manyFills, replaced []int, before []local.Stamp, out map[string]V, co call) {
	if len(replaced) == 0 {
		return
	}
	hs := make([]uint64, len(replaced))
	bs := make([]local.Stamp, len(replaced))
	for k, j := range replaced {
		hs[k], bs[k] = b.item(j).h, before[j]
	}
	c.replaceLocalMany(hs, bs, func(k int, after local.Stamp) {
		c.keepFilled(b, replaced[k], out, co, after)
	})
}

func keysOf(items []manyItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.key
	}
	return out
}

func leasesOf(fills []lock.Fill) []*lock.Lease {
	out := make([]*lock.Lease, len(fills))
	for i, f := range fills {
		out[i] = f.Lease
	}
	return out
}

func (c *Cache[V]) releaseMany(ctx context.Context, leases []*lock.Lease) {
	var held []*lock.Lease
	for _, le := range leases {
		if le != nil {
			held = append(held, le)
		}
	}
	// Whatever became of the caller's context: see Cache.release.
	if err := c.c.leases.ReleaseMany(context.WithoutCancel(ctx), held); err != nil {
		c.redisError("release", err)
	}
}

// loadBatch calls a batch loader once for the ids of pending, turning a
// panic into an error.
func (c *Cache[V]) loadBatch(ctx context.Context, pending []manyItem, load func(context.Context, []string) (map[string]V, error)) (m map[string]V, err error) {
	ids := make([]string, len(pending))
	for i, it := range pending {
		ids[i] = it.id
	}
	c.counters.loads.inc()
	defer c.endLoad(time.Now(), &err)
	return load(ctx, ids)
}
