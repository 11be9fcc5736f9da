package tiered

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/bus"
	"github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/observe"
	"github.com/tieredcache/tieredcache/internal/wire"
)

// busHandler applies what the invalidation bus reports.
type busHandler struct{ c *Client }

func (h busHandler) Up(gap bool) {
	c := h.c
	// Anything cached while the subscription was away may have missed an
	// invalidation. Flush before leaving degraded mode, so an install that
	// raced the flush used the short TTL.
	if gap {
		c.flushL1(&c.counters.flushGap)
	} else {
		c.flushL1(nil)
	}
	c.checkServers(gap)
	mode := c.bus.Mode()
	c.tracking.Store(mode == modeTracking)
	if c.modeLogged.CompareAndSwap(false, true) {
		c.opts.Logger.Info("tiered: invalidation mode", "mode", mode)
	}
	if c.degraded.Swap(false) && c.lastDown.Load() != nil {
		c.opts.Logger.Info("tiered: Redis subscription restored; caching enabled", "gap", gap)
	}
	select {
	case c.replayNow <- struct{}{}:
	default:
	}
}

func (h busHandler) Down(err error) {
	c := h.c
	c.lastDown.Store(&err)
	c.downOnce.Do(func() { close(c.downSeen) })
	if c.degraded.Swap(true) {
		return // already down (or never up): nothing cached since the flush
	}
	c.opts.Logger.Warn("tiered: Redis subscription lost; serving loads with short-lived local caching", "error", err)
	c.flushL1(&c.counters.flushDown)
}

// Message applies an app-level message: another process's write or fill,
// or an explicit invalidation from another service. A fill is of a key
// loaded fresh into Redis; a copy here can only predate it (an expiry, a
// write this process has not heard of yet), so it fences like any write.
// The bus drops this process's own messages before decoding them: what
// they say was applied here when it was written, and the writer woke this
// process's waiters itself (wakeKeys).
func (h busHandler) Message(m wire.Message) {
	c := h.c
	if m.Origin == c.opts.InstanceID {
		return // not sent by the bus; another process using our id
	}
	c.counters.received.inc()
	c.invalidate(m.Keys)
}

// wakeKeys wakes this process's callers waiting for another process to
// fill keys, after this process wrote, filled or deleted them: their next
// read of Redis sees the write.
func (c *Client) wakeKeys(keys ...string) {
	for _, k := range keys {
		c.wake.wake(c.hashString(k))
	}
}

// Invalidate applies Redis's own report of modified keys (tracking): any
// writer's, this process's included, and expiry or eviction. nil keys mean
// a FLUSHALL or FLUSHDB: everything goes.
func (h busHandler) Invalidate(keys []string) {
	c := h.c
	if keys == nil {
		c.flushL1(&c.counters.flushAll)
		return
	}
	c.counters.received.inc()
	c.invalidate(keys)
}

func (h busHandler) Malformed(err error) {
	h.c.counters.malformed.inc()
	h.c.malformedLog.warn(h.c.opts.Logger, "tiered: ignored malformed invalidation message", "error", err)
}

// invalidate drops keys' in-process copies, moves their generations (so
// installs and flights that began before fail or are not joined), and
// wakes whoever waits for them.
func (c *Client) invalidate(keys []string) {
	for _, k := range keys {
		hash := c.hashString(k)
		if c.refetching != nil {
			c.dropAndRefetch(hash, k)
		} else {
			c.l1Invalidate(hash)
		}
		c.wake.wake(hash)
	}
	observe.Invalidated(keys)
}

// checkServers learns which Redis servers serve the Client, in the
// background (the bus calls Up under its lock). After a gap, a server it
// had not seen before (a replica promoted by a failover) may have lost the
// latest writes: the keys this process wrote lately are then deleted
// again, through the replay of failed writes (see recentWrites).
func (c *Client) checkServers(gap bool) {
	since := time.Now().Add(-recentWindow(c.opts))
	if !c.enter() {
		return
	}
	go func() {
		defer c.leave()
		ctx, cancel := context.WithTimeout(c.ctx, 2*c.opts.OpTimeout)
		defer cancel()
		ids, err := serverIDs(ctx, c.opts.Redis)
		if err != nil {
			ids = nil // unknown: assume the servers changed
		}
		prev := c.servers.Swap(&ids)
		if gap && prev != nil && (ids == nil || *prev == nil || !subset(ids, *prev)) {
			c.redoRecentWrites(since)
		}
	}()
}

// redoRecentWrites queues for deletion the keys this process wrote since.
func (c *Client) redoRecentWrites(since time.Time) {
	keys, complete := c.recent.since(since)
	if !complete {
		c.opts.Logger.Warn("tiered: more writes in the failover window than remembered; the oldest are not re-deleted",
			"remembered", len(keys))
	}
	if len(keys) > 0 {
		c.opts.Logger.Info("tiered: Redis changed servers; deleting again the keys written just before, which it may have lost",
			"keys", len(keys))
		c.deferInvalidation(keys...)
		select {
		case c.replayNow <- struct{}{}:
		default:
		}
	}
}

// serverIDs returns the run ids of the Redis servers holding the keys:
// the node, or every master of a cluster.
func serverIDs(ctx context.Context, rdb redis.UniversalClient) (map[string]bool, error) {
	ids := map[string]bool{}
	var mu sync.Mutex
	add := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "server").Result()
		if err != nil {
			return err
		}
		id := bus.RunID(info)
		if id == "" {
			return errors.New("INFO server shows no run_id")
		}
		mu.Lock()
		ids[id] = true
		mu.Unlock()
		return nil
	}
	switch r := rdb.(type) {
	case *redis.Client:
		return ids, add(ctx, r)
	case *redis.ClusterClient:
		return ids, r.ForEachMaster(ctx, add)
	}
	return nil, errors.New("unknown client type")
}

// subset reports whether every id of a is in b.
func subset(a, b map[string]bool) bool {
	for id := range a {
		if !b[id] {
			return false
		}
	}
	return true
}

// modeTracking is the mode of a bus that Redis reports changes to
// (bus.Bus.Mode).
const modeTracking = "tracking"

// fillNotice returns the channel and message a fill of key publishes: none
// when Redis tracks the keys (the fill's write reaches every process as an
// invalidation), else a fill notice, or for a refresh, which replaces a
// value others may hold, an invalidation.
func (c *Client) fillNotice(key string, refresh bool) (string, []byte) {
	if c.tracking.Load() {
		return "", nil
	}
	kind := wire.KindFill
	if refresh {
		kind = wire.KindInvalidate
	}
	msg, err := c.bus.Encode(kind, key)
	if err != nil {
		return "", nil
	}
	return c.opts.Channel, msg
}

// publishChannel is the channel writes publish on: none when Redis tracks
// the keys itself.
func (c *Client) publishChannel() string {
	if c.tracking.Load() {
		return ""
	}
	return c.opts.Channel
}

// deferInvalidation records keys whose write or delete failed on Redis:
// the value there, and other processes' copies, may be stale. When Redis is
// back the keys are deleted and invalidated.
func (c *Client) deferInvalidation(keys ...string) {
	if c.store == nil {
		return
	}
	if lost := c.pending.add(keys...); lost > 0 {
		c.counters.lostInvalidations.add(uint64(lost))
		c.opts.Logger.Error("tiered: too many invalidations waiting for Redis; some are lost",
			"lost", lost, "limit", c.opts.MaxPendingInvalidations)
	}
	c.kickReplay()
}

func (c *Client) kickReplay() {
	if c.replayKick == nil {
		return
	}
	select {
	case c.replayKick <- struct{}{}:
	default:
	}
}

// replayLoop replays deferred invalidations when a write fails and when
// the subscription comes back, retrying with backoff while Redis still
// fails. While it backs off only Redis coming back hurries it: failing
// writes do not, or a stream of them would hammer a struggling Redis. It
// ends when the Client closes.
func (c *Client) replayLoop() {
	defer close(c.replayDone)
	const minDelay, maxDelay = 100 * time.Millisecond, 5 * time.Second
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.replayKick:
		case <-c.replayNow:
		}
		delay := minDelay
		for !c.replay() {
			t := time.NewTimer(delay)
			select {
			case <-c.ctx.Done():
				t.Stop()
				return
			case <-c.replayNow:
			case <-t.C:
			}
			t.Stop()
			delay = min(2*delay, maxDelay)
		}
	}
}

// replay deletes and invalidates the pending keys, a batch per round trip,
// as many batches as there were keys when it began (keys that fail again
// meanwhile wait for the next round). It reports whether none is left.
func (c *Client) replay() bool {
	for rounds := c.pending.len()/warmBatch + 1; rounds > 0; rounds-- {
		batch, seqs := c.pending.peek(warmBatch)
		if len(batch) == 0 {
			return true
		}
		leases := make([]string, len(batch))
		for i, k := range batch {
			leases[i] = lock.Key(k)
		}
		msgs, err := c.bus.EncodeAll(wire.KindInvalidate, batch...)
		if err == nil {
			err = c.store.DeleteMany(c.ctx, batch, leases, c.opts.Channel, msgs)
			c.wakeKeys(batch...)
		}
		if err != nil {
			if !isBreakerRefusal(err) {
				c.counters.redisError("replay")
			}
			return false
		}
		// This process ignores its own message: drop its copies here, in
		// case a read re-cached an old value while Redis was away.
		for _, k := range batch {
			c.l1Invalidate(c.hashString(k))
		}
		c.pending.done(batch, seqs)
		c.counters.replayed.add(uint64(len(batch)))
		c.counters.published.inc()
		c.opts.Logger.Info("tiered: replayed invalidations deferred while Redis was unavailable", "keys", len(batch))
	}
	return c.pending.len() == 0
}

// pendingInvalidations is the bounded set of keys waiting for replay. A
// key stays in it until a replay that started after its last failure
// succeeds.
type pendingInvalidations struct {
	mu   sync.Mutex
	keys map[string]uint64 // key -> sequence of its last failure
	seq  uint64
	max  int
}

// add records keys and returns how many did not fit.
func (p *pendingInvalidations) add(keys ...string) (lost int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keys == nil {
		p.keys = make(map[string]uint64)
	}
	for _, k := range keys {
		if _, ok := p.keys[k]; !ok && len(p.keys) >= p.max {
			lost++
			continue
		}
		p.seq++
		p.keys[k] = p.seq
	}
	return lost
}

// peek returns up to n pending keys, in order, with their sequences.
func (p *pendingInvalidations) peek(n int) ([]string, []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]string, 0, min(n, len(p.keys)))
	for k := range p.keys {
		if len(keys) == n {
			break
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seqs := make([]uint64, len(keys))
	for i, k := range keys {
		seqs[i] = p.keys[k]
	}
	return keys, seqs
}

// done removes replayed keys, unless one failed again since it was peeked.
func (p *pendingInvalidations) done(keys []string, seqs []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range keys {
		if p.keys[k] == seqs[i] {
			delete(p.keys, k)
		}
	}
}

func (p *pendingInvalidations) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// waiters wakes callers waiting for another process to fill a key. It is a
// fixed array of stripes, each with a channel closed on every fill or
// invalidation of a key in the stripe; a waiter then re-reads Redis, so a
// wake-up meant for another key of the stripe costs one read.
type waiters struct {
	stripes [256]struct {
		mu sync.Mutex
		ch chan struct{}
	}
}

func (w *waiters) wait(h uint64) <-chan struct{} {
	s := &w.stripes[h%uint64(len(w.stripes))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (w *waiters) wake(h uint64) {
	s := &w.stripes[h%uint64(len(w.stripes))]
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}
