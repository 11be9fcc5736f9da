package tiered

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/bus"
	"github.com/tieredcache/tieredcache/internal/guard"
	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/observe"
	"github.com/tieredcache/tieredcache/internal/store"
	"github.com/tieredcache/tieredcache/keys"
)

// Client is one process's cache: the in-process tier, the Redis store, the
// load leases and the invalidation subscription, shared by every Cache made
// from it. Make one per process with New and Close it on shutdown.
type Client struct {
	opts   Options
	keys   *keys.Builder
	l1     *local.Cache[any] // always set: its stamps fence every install and flight
	l1off  bool              // L1MaxBytes < 0: the tier holds no values, only stamps
	store  *store.Store      // nil in L1-only mode
	leases *lock.Leaser
	bus    *bus.Bus
	wake   waiters

	breaker    *breaker     // nil when disabled
	seed       maphash.Seed // of every key hash
	pending    pendingInvalidations
	recent     *recentWrites                   // this process's latest writes, for gaps
	servers    atomic.Pointer[map[string]bool] // run ids of the Redis servers, as last seen
	replayKick chan struct{}                   // a write failed: replay, at the backoff's pace
	replayNow  chan struct{}                   // Redis is back: replay at once
	replayDone chan struct{}

	// degraded is set while the subscription is down (or not yet up): the
	// in-process tier then keeps values only DegradedTTL.
	degraded atomic.Bool
	lastDown atomic.Pointer[error]
	// downSeen is closed when the bus first reports a failure, so that New
	// need not wait out StartupWait for a Redis that refuses connections.
	downSeen chan struct{}
	downOnce sync.Once

	// refetching bounds the refetches of invalidated keys under way
	// (Options.RefetchInvalidated): one token each.
	refetching chan struct{}

	// tracking is set while Redis reports modified keys itself (see
	// bus.Bus): writes then publish nothing.
	tracking     atomic.Bool
	modeLogged   atomic.Bool
	malformedLog rateLimit

	// ctx is cancelled by Close, which stops loads under way.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.RWMutex // guards flights.Add against Close
	closed  atomic.Bool
	flights sync.WaitGroup

	// ownedRedis is the client NewFromEnv made, closed by Close.
	ownedRedis *redis.Client

	counters clientCounters
	cachesMu sync.Mutex
	caches   []cacheStatser
	metrics  *metrics
}

type cacheStatser interface{ stats() CacheStats }

// New returns a Client. It fails only on invalid options: with Redis
// unreachable it logs a warning, serves from the loader and the in-process
// tier (for DegradedTTL), and keeps reconnecting in the background.
func New(opts Options) (*Client, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	c := &Client{opts: o, keys: o.Keys, seed: maphash.MakeSeed(), downSeen: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// With the in-process tier disabled, a minimal one still keeps the
	// generations that key flights and fence installs; it never holds values.
	lcfg := local.Config{MaxBytes: o.L1MaxBytes, Seed: c.seed, OnEvict: c.counters.l1Evicted.inc, OnReject: c.counters.l1Rejected.inc,
		TrackUse: o.RefetchInvalidated}
	if o.L1MaxBytes < 0 {
		c.l1off = true
		lcfg = local.Config{MaxBytes: 1 << 16, Counters: 1024, Seed: c.seed}
	}
	if c.l1, err = local.New[any](lcfg); err != nil {
		c.cancel()
		return nil, fmt.Errorf("tiered: %w", err)
	}
	if o.Redis != nil {
		if err := c.connect(o); err != nil {
			c.cancel()
			c.closeL1()
			return nil, err
		}
	}
	// Attached last: a scrape may read the Client from now on.
	if c.metrics, err = newMetrics(c, o.Registerer, o.HistogramBuckets); err != nil {
		c.cancel()
		c.closeL1()
		return nil, err
	}
	if o.Redis == nil {
		return c, nil
	}
	go c.replayLoop()
	c.bus.Start()
	t := time.NewTimer(o.StartupWait)
	defer t.Stop()
	select {
	case <-c.bus.Ready():
	case <-c.downSeen:
		o.Logger.Warn("Failed to connect to Redis: " + (*c.lastDown.Load()).Error() + ". Caching disabled.")
	case <-t.C:
		reason := "no answer within " + o.StartupWait.String()
		if p := c.lastDown.Load(); p != nil {
			reason = (*p).Error()
		}
		o.Logger.Warn("Failed to connect to Redis: " + reason + ". Caching disabled.")
	}
	return c, nil
}

// connect sets up, without starting anything, what the Client needs of
// Redis: the breaker, the store, the leases and the bus.
func (c *Client) connect(o Options) error {
	if _, ok := o.Redis.(*redis.Ring); ok {
		// A Ring shards pub/sub too: an invalidation published on the
		// shard of its key never reaches subscribers of another shard.
		return errors.New("tiered: redis.Ring is not supported: invalidations would not reach every process; use a single node, Sentinel or Cluster")
	}
	c.breaker = newBreaker(c, o)
	var g guard.Guard
	if c.breaker != nil {
		g = c.breaker
	}
	c.store = store.New(o.Redis, store.Config{Timeout: o.OpTimeout, Guard: g})
	var err error
	if c.leases, err = lock.New(o.Redis, lock.Config{TTL: o.LeaseTTL, Timeout: o.OpTimeout, Guard: g}); err != nil {
		return fmt.Errorf("tiered: %w", err)
	}
	track := o.Keys.Prefix() + ":"
	if o.PubSubOnly {
		track = ""
	}
	c.bus, err = bus.New(o.Redis, bus.Config{
		Channel:      o.Channel,
		Origin:       o.InstanceID,
		TrackPrefix:  track,
		PingInterval: o.HealthCheckInterval,
		Handler:      busHandler{c},
	})
	if err != nil {
		return fmt.Errorf("tiered: %w", err)
	}
	warnContextTimeout(o)
	c.degraded.Store(true)
	c.pending.max = o.MaxPendingInvalidations
	c.replayKick = make(chan struct{}, 1)
	c.replayNow = make(chan struct{}, 1)
	c.recent = newRecentWrites(o.MaxPendingInvalidations)
	if o.RefetchInvalidated {
		c.refetching = make(chan struct{}, refetchConcurrency)
	}
	c.replayDone = make(chan struct{})
	return nil
}

// warnContextTimeout logs when the Redis client ignores context deadlines
// on the socket, which lets a hung server hold calls past OpTimeout.
func warnContextTimeout(o Options) {
	enabled := true
	switch r := o.Redis.(type) {
	case *redis.Client:
		enabled = r.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		enabled = r.Options().ContextTimeoutEnabled
	}
	if !enabled {
		o.Logger.Warn("tiered: the Redis client was made without ContextTimeoutEnabled; " +
			"a hung Redis holds calls for its ReadTimeout instead of OpTimeout")
	}
}

func newInstanceID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// debug reports whether operations are to be logged.
func (c *Client) debug(ctx context.Context) bool {
	return c.opts.Logger.Enabled(ctx, slog.LevelDebug)
}

// redisUp reports whether Redis is configured and usable: the
// invalidation subscription is confirmed and the circuit breaker is not
// open.
func (c *Client) redisUp() bool {
	return c.bus != nil && !c.degraded.Load() && !c.breakerIsOpen()
}

// breakerIsOpen reports whether the breaker refuses calls.
func (c *Client) breakerIsOpen() bool { return c.breaker.isOpen() }

// Close stops the subscription and cancels loads under way, waits for
// them, and releases the in-process tier. Calls afterwards return
// ErrClosed. It does not close the Redis client. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true)
	c.mu.Unlock()
	c.cancel()
	var err error
	if c.bus != nil {
		err = c.bus.Close()
		<-c.replayDone
	}
	c.flights.Wait()
	c.closeL1()
	c.metrics.unregister(c)
	if c.ownedRedis != nil {
		err = errors.Join(err, c.ownedRedis.Close())
	}
	return err
}

// l1Invalidate drops a key's in-process copy and fails installs under way.
func (c *Client) l1Invalidate(h uint64) { c.l1.Invalidate(h) }

// flushL1 makes every in-process copy read as a miss, reports it to the
// observer, and counts it under reason (nil: not counted).
func (c *Client) flushL1(reason *counter) {
	c.l1.Flush()
	observe.Invalidated(nil)
	if reason != nil {
		reason.inc()
	}
}

func (c *Client) closeL1() { c.l1.Close() }

// enter registers a load under way; it fails once Close has begun.
func (c *Client) enter() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return false
	}
	c.flights.Add(1)
	return true
}

func (c *Client) leave() { c.flights.Done() }

// loadContext returns the context a shared load runs under: the values of
// the caller that started it, none of its cancellation, LoadTimeout, and
// cancelled by Close.
func (c *Client) loadContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.opts.LoadTimeout)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// l1TTL returns how long an entry may live in the in-process tier.
func (c *Client) l1TTL(want time.Duration, degraded bool) time.Duration {
	if degraded || c.degraded.Load() {
		return min(want, c.opts.DegradedTTL)
	}
	return want
}

func (c *Client) register(s cacheStatser) {
	c.cachesMu.Lock()
	c.caches = append(c.caches, s)
	c.cachesMu.Unlock()
}

// Stats returns a snapshot of the Client's counters, for users without
// Prometheus.
func (c *Client) Stats() Stats {
	s := Stats{
		RedisUp:                c.redisUp(),
		InvalidationsPublished: c.counters.published.load(),
		InvalidationsReceived:  c.counters.received.load(),
		MalformedMessages:      c.counters.malformed.load(),
		FlushesGap:             c.counters.flushGap.load(),
		FlushesDown:            c.counters.flushDown.load(),
		FlushesAll:             c.counters.flushAll.load(),
		L1Evicted:              c.counters.l1Evicted.load(),
		L1Rejected:             c.counters.l1Rejected.load(),
		RedisErrors:            c.counters.redisErrorTotal(),
		BreakerOpen:            c.breakerIsOpen(),
		BreakerOpened:          c.counters.breakerOpened.load(),
		BreakerRejections:      c.counters.breakerRejected.load(),
		PendingInvalidations:   c.pending.len(),
		LostInvalidations:      c.counters.lostInvalidations.load(),
		ReplayedInvalidations:  c.counters.replayed.load(),
		RefetchesSkipped:       c.counters.refetchesSkipped.load(),
	}
	if c.bus != nil {
		s.InvalidationMode = c.bus.Mode()
	}
	if !c.l1off {
		s.L1Dropped = c.l1.Dropped()
		s.L1Bytes = c.l1.Cost()
	}
	c.cachesMu.Lock()
	for _, cs := range c.caches {
		s.Caches = append(s.Caches, cs.stats())
	}
	c.cachesMu.Unlock()
	return s
}

// hash hashes a key for the in-process tier (whose seed it shares) and the
// waiter stripes.
func (c *Client) hash(k []byte) uint64 { return maphash.Bytes(c.seed, k) }

func (c *Client) hashString(k string) uint64 { return maphash.String(c.seed, k) }
