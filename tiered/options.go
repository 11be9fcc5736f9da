package tiered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/remote"
)

// Codec turns values into the bytes stored in Redis and back. The default
// is JSON, which the Python template reads and writes.
type Codec = remote.Codec

// Options configures a Client. The zero value of every field means its
// default; New does not modify the struct it is given.
type Options struct {
	// Redis is the shared tier: a *redis.Client, *redis.ClusterClient or
	// Sentinel failover client (*redis.Ring is refused: it shards pub/sub,
	// so invalidations would not reach every process). Nil runs the cache in L1-only
	// mode: nothing is shared between processes. The Client does not close
	// it. Make it with ContextTimeoutEnabled: true so that OpTimeout bounds
	// socket reads, not just waits for a connection.
	Redis redis.UniversalClient

	// Keys builds the keys. Default: keys.New("cache").
	Keys *keys.Builder

	// L1MaxBytes is the in-process tier's memory budget. Default: 64 MiB.
	// Negative disables the in-process tier.
	L1MaxBytes int64

	// TTL is how long values live in Redis. Default: 5 minutes. Caches and
	// calls may override it.
	TTL time.Duration

	// L1TTL is the longest a value stays in the in-process tier after it
	// was read, a bound on staleness should an invalidation be lost (it is
	// never longer than the TTL). Default: 1 minute. In L1-only mode the TTL
	// alone applies.
	L1TTL time.Duration

	// DegradedTTL is how long the in-process tier keeps values while Redis
	// or the invalidation subscription is down, when no invalidation can
	// arrive. Default: 5 seconds.
	DegradedTTL time.Duration

	// LoadTimeout bounds one shared load: the loader and the Redis calls
	// around it. It runs detached from the callers' contexts, each of which
	// only bounds that caller's wait. Default: 10 seconds.
	LoadTimeout time.Duration

	// LeaseTTL is how long a cross-process load lease lasts if its holder
	// never fills it (a crash). Default: LoadTimeout.
	LeaseTTL time.Duration

	// LeaseWait is how long a process waits for another process's load of
	// the same key before loading it itself (without caching the result),
	// under a LoadTimeout of its own. Default: half of LoadTimeout.
	LeaseWait time.Duration

	// OpTimeout bounds each Redis call. Default: 250 milliseconds.
	OpTimeout time.Duration

	// MaxValueBytes is the largest encoded value the cache stores; Set of a
	// larger one fails with ErrTooLarge. Default: 1 MiB.
	MaxValueBytes int

	// Channel is the pub/sub channel for invalidations. Every process that
	// shares the keys must use the same one. Default: "{prefix}:invalidate".
	Channel string

	// PubSubOnly turns Redis-assisted invalidation off: only writers that
	// publish on Channel (this library, services that speak its wire
	// format) make other processes drop their copies, and writes by others
	// (the Python template's SETEX and DEL, expiry, eviction) stay invisible
	// for up to L1TTL. By default every process asks Redis to report every
	// modification of keys under the prefix (CLIENT TRACKING ... BCAST),
	// falling back to the channel alone where Redis refuses.
	PubSubOnly bool

	// InstanceID names this process in invalidation messages.
	// Default: hostname, pid and a random suffix.
	InstanceID string

	// HealthCheckInterval is how long the subscription may stay silent
	// before it is pinged; a ping unanswered for another interval counts as
	// a lost subscription. Default: 1 second.
	HealthCheckInterval time.Duration

	// StartupWait is how long New waits for the first subscription before
	// it returns with Redis marked unavailable. Default: 2 seconds.
	StartupWait time.Duration

	// Breaker tunes the circuit breaker in front of Redis.
	Breaker BreakerOptions

	// MaxPendingInvalidations bounds the keys remembered when a Set or
	// Delete fails on Redis, to be deleted and invalidated when it returns.
	// Beyond it invalidations are lost (counted and logged). Default: 100000.
	MaxPendingInvalidations int

	// HistogramBuckets are the upper bounds, in seconds, of
	// cache_operation_duration_seconds. Default: the Python template's
	// (0.001, 0.005, 0.01, 0.05, 0.1, 0.5), so that a dashboard can sum both
	// services' buckets by le; finer ones resolve a loopback Redis call
	// (about 50 µs). Clients sharing a Registerer must use the same.
	HistogramBuckets []float64

	// Registerer receives the Client's Prometheus metrics. Nil: none.
	Registerer prometheus.Registerer

	// Logger receives the Client's logs. Default: slog.Default(), so that
	// a Redis that cannot be reached is reported as the Python template
	// reports it ("Failed to connect to Redis: ... Caching disabled."). At debug level every
	// operation logs a line with operation, resource_type, cache_hit,
	// duration_ms, request_id and org_id, as the Python template does; the
	// check for the level is all it costs when debug is off.
	Logger *slog.Logger

	// RequestID extracts the request id logged with each operation from the
	// caller's context. Default: the id set by WithRequestID.
	RequestID func(ctx context.Context) (string, bool)
}

const (
	defaultPrefix      = "cache"
	defaultL1MaxBytes  = 64 << 20
	defaultTTL         = 5 * time.Minute
	defaultL1TTL       = time.Minute
	defaultDegradedTTL = 5 * time.Second
	defaultLoadTimeout = 10 * time.Second
	defaultOpTimeout   = 250 * time.Millisecond
	defaultMaxValue    = 1 << 20
	defaultHealthCheck = time.Second
	defaultStartupWait = 2 * time.Second
	defaultMaxPending  = 100000
)

// resolve returns a copy of o with defaults filled in, or an error.
func (o Options) resolve() (Options, error) {
	for name, d := range map[string]time.Duration{
		"TTL": o.TTL, "L1TTL": o.L1TTL, "DegradedTTL": o.DegradedTTL,
		"LoadTimeout": o.LoadTimeout, "LeaseTTL": o.LeaseTTL, "LeaseWait": o.LeaseWait,
		"OpTimeout": o.OpTimeout, "HealthCheckInterval": o.HealthCheckInterval,
		"StartupWait": o.StartupWait,
	} {
		if d < 0 {
			return o, fmt.Errorf("tiered: %s must not be negative, got %v", name, d)
		}
	}
	if o.MaxValueBytes < 0 {
		return o, errors.New("tiered: MaxValueBytes must not be negative")
	}
	if o.MaxPendingInvalidations < 0 {
		return o, errors.New("tiered: MaxPendingInvalidations must not be negative")
	}
	if o.Breaker.Cooldown < 0 {
		return o, errors.New("tiered: Breaker.Cooldown must not be negative")
	}
	if o.HistogramBuckets == nil {
		o.HistogramBuckets = templateBuckets
	}
	for i, b := range o.HistogramBuckets {
		if b <= 0 || (i > 0 && b <= o.HistogramBuckets[i-1]) {
			return o, fmt.Errorf("tiered: HistogramBuckets %v: must be positive and increasing", o.HistogramBuckets)
		}
	}
	if o.Keys == nil {
		kb, err := keys.New(defaultPrefix)
		if err != nil {
			return o, err
		}
		o.Keys = kb
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.L1MaxBytes == 0 {
		o.L1MaxBytes = defaultL1MaxBytes
	}
	def(&o.TTL, defaultTTL)
	def(&o.L1TTL, defaultL1TTL)
	def(&o.DegradedTTL, defaultDegradedTTL)
	def(&o.LoadTimeout, defaultLoadTimeout)
	def(&o.LeaseTTL, o.LoadTimeout)
	def(&o.LeaseWait, o.LoadTimeout/2)
	def(&o.OpTimeout, defaultOpTimeout)
	def(&o.HealthCheckInterval, defaultHealthCheck)
	def(&o.StartupWait, defaultStartupWait)
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = defaultMaxValue
	}
	if o.MaxPendingInvalidations == 0 {
		o.MaxPendingInvalidations = defaultMaxPending
	}
	if o.Breaker.Failures == 0 {
		o.Breaker.Failures = defaultBreakerFailures
	}
	def(&o.Breaker.Cooldown, defaultBreakerCooldown)
	if o.Channel == "" {
		o.Channel = o.Keys.Prefix() + ":invalidate"
	}
	if o.InstanceID == "" {
		o.InstanceID = newInstanceID()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RequestID == nil {
		o.RequestID = RequestIDFrom
	}
	return o, nil
}

// CacheOption configures one Cache.
type CacheOption func(*cacheConfig) error

type cacheConfig struct {
	ttl, l1ttl time.Duration
	version    string
	codec      Codec
	noL1       bool
}

// WithTTL sets how long this cache's values live in Redis. Default: the
// Client's TTL.
func WithTTL(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if d <= 0 {
			return fmt.Errorf("tiered: WithTTL(%v): must be positive", d)
		}
		c.ttl = d
		return nil
	}
}

// WithL1TTL sets the longest this cache's values stay in the in-process
// tier. Default: the Client's L1TTL.
func WithL1TTL(d time.Duration) CacheOption {
	return func(c *cacheConfig) error {
		if d <= 0 {
			return fmt.Errorf("tiered: WithL1TTL(%v): must be positive", d)
		}
		c.l1ttl = d
		return nil
	}
}

// WithVersion sets this cache's key version, e.g. "v2" after a schema
// change. Default: the key builder's.
func WithVersion(v string) CacheOption {
	return func(c *cacheConfig) error {
		if v == "" {
			return errors.New("tiered: WithVersion(\"\"): must not be empty")
		}
		c.version = v
		return nil
	}
}

// WithCodec sets how values are encoded in Redis. Default: JSON.
func WithCodec(codec Codec) CacheOption {
	return func(c *cacheConfig) error {
		if codec == nil {
			return errors.New("tiered: WithCodec(nil)")
		}
		c.codec = codec
		return nil
	}
}

// WithoutL1 keeps this cache's values out of the in-process tier: every
// read goes to Redis. For values that must never be served stale.
func WithoutL1() CacheOption {
	return func(c *cacheConfig) error {
		c.noL1 = true
		return nil
	}
}

// CallOption adjusts one call. Call options are plain values: passing them
// does not allocate.
type CallOption struct {
	kind callKind
	s    string
	d    time.Duration
}

type callKind uint8

const (
	callTTL callKind = iota + 1
	callTenant
	callVersion
	callSuffix
	callRefresh
)

// TTL sets how long the value written by this call lives in Redis.
func TTL(d time.Duration) CallOption { return CallOption{kind: callTTL, d: d} }

// Tenant sets the tenant of this call's key, overriding the context's.
func Tenant(id string) CallOption { return CallOption{kind: callTenant, s: id} }

// Version sets the version of this call's key.
func Version(v string) CallOption { return CallOption{kind: callVersion, s: v} }

// Suffix sets a variation suffix for this call's key, e.g. "with_memberships".
func Suffix(s string) CallOption { return CallOption{kind: callSuffix, s: s} }

// Refresh skips reading the cache: Get reads Redis directly, and Fetch
// loads and stores a fresh value (the template's conditional caching).
func Refresh() CallOption { return CallOption{kind: callRefresh} }

// call is the resolved form of a call's options.
type call struct {
	ttl, l1ttl time.Duration
	tenant     string
	version    string
	suffix     string
	hasTenant  bool
	hasVersion bool
	refresh    bool
}

func (c *Cache[V]) resolve(opts []CallOption) (call, error) {
	// The cache's own version is the default of its key builder; only a
	// call's Version is passed on.
	co := call{ttl: c.cfg.ttl, l1ttl: c.cfg.l1ttl}
	for _, o := range opts {
		switch o.kind {
		case callTTL:
			if o.d <= 0 {
				return co, fmt.Errorf("tiered: TTL(%v): must be positive", o.d)
			}
			co.ttl = o.d
		case callTenant:
			co.tenant, co.hasTenant = o.s, true
		case callVersion:
			co.version, co.hasVersion = o.s, true
		case callSuffix:
			co.suffix = o.s
		case callRefresh:
			co.refresh = true
		}
	}
	co.l1ttl = min(co.l1ttl, co.ttl)
	return co, nil
}
