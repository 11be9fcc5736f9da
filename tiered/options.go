package tiered

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/envelope"
	"github.com/tieredcache/tieredcache/keys"
)

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

	// TTLJitter shortens each value's TTL in Redis by a random fraction of
	// it, up to this one, so that values written together (a warm-up) do
	// not expire together. Default: 0.1; negative turns it off.
	TTLJitter float64

	// BreakerFailures is how many consecutive Redis calls must fail for
	// want of Redis (a refused or dropped connection, a timeout, LOADING and
	// the like) to open the circuit breaker in front of Redis. While it is
	// open, calls that would go to Redis fail at once, so callers pay their
	// loader's latency, never Redis's timeouts. Default: 1.
	BreakerFailures uint32

	// BreakerCooldown is how often, while the breaker is open, a background
	// probe pings Redis; its first answer closes the breaker. Callers never
	// test Redis themselves. Default: 500 milliseconds.
	BreakerCooldown time.Duration

	// BreakerDisabled turns the breaker off: every call goes to Redis.
	BreakerDisabled bool

	// RefetchInvalidated makes a key that Redis reports changed (another
	// process's write, this process's own, another service's) read again
	// from Redis at once, in the background, when this process held it and
	// had served it since it was cached: the next read of a key in use then
	// hits in-process instead of waiting for Redis. A read that comes while
	// the refetch runs shares it. The refetch is an ordinary fenced read, so
	// it never brings back a value older than the change. It costs one
	// Redis read per change of a key in use here, at most one per read the
	// key served, and at most 64 run at once (beyond, the key is only
	// dropped, as without the option). Default: off.
	RefetchInvalidated bool

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
	// caller's context. Default: the id Middleware puts there.
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
	defaultTTLJitter   = 0.1
)

// resolve returns a copy of o with defaults filled in, or an error.
func (o Options) resolve() (Options, error) {
	if err := o.validate(); err != nil {
		return o, err
	}
	return o.withDefaults()
}

// validate checks the fields a user set.
func (o Options) validate() error {
	for name, d := range map[string]time.Duration{
		"TTL": o.TTL, "L1TTL": o.L1TTL, "DegradedTTL": o.DegradedTTL,
		"LoadTimeout": o.LoadTimeout, "LeaseTTL": o.LeaseTTL, "LeaseWait": o.LeaseWait,
		"OpTimeout": o.OpTimeout, "HealthCheckInterval": o.HealthCheckInterval,
		"StartupWait": o.StartupWait, "BreakerCooldown": o.BreakerCooldown,
	} {
		if d < 0 {
			return fmt.Errorf("tiered: %s must not be negative, got %v", name, d)
		}
	}
	if o.MaxValueBytes < 0 {
		return errors.New("tiered: MaxValueBytes must not be negative")
	}
	if o.MaxPendingInvalidations < 0 {
		return errors.New("tiered: MaxPendingInvalidations must not be negative")
	}
	if o.TTLJitter >= 1 || math.IsNaN(o.TTLJitter) {
		return fmt.Errorf("tiered: TTLJitter %v: must be below 1", o.TTLJitter)
	}
	for i, b := range o.HistogramBuckets {
		if b <= 0 || (i > 0 && b <= o.HistogramBuckets[i-1]) {
			return fmt.Errorf("tiered: HistogramBuckets %v: must be positive and increasing", o.HistogramBuckets)
		}
	}
	return nil
}

// withDefaults returns o with every unset field at its default.
func (o Options) withDefaults() (Options, error) {
	if o.HistogramBuckets == nil {
		o.HistogramBuckets = templateBuckets
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
	switch {
	case o.TTLJitter == 0:
		o.TTLJitter = defaultTTLJitter
	case o.TTLJitter < 0:
		o.TTLJitter = 0
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = defaultBreakerFailures
	}
	def(&o.BreakerCooldown, defaultBreakerCooldown)
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
		o.RequestID = requestIDFrom
	}
	return o, nil
}

// Option configures a Cache, when passed to NewCache, or one call. Each
// option's comment says where it applies; passing it anywhere else is an
// error. Options are plain values: passing them does not allocate.
type Option struct {
	kind  optKind
	s     string
	d     time.Duration
	f     float64
	n     int
	keys  map[string][]byte
	codec codec
}

type optKind uint8

const (
	optTTL optKind = iota + 1
	optL1TTL
	optVersion
	optTenant
	optSuffix
	optCodec
	optNoL1
	optReload
	optNegativeTTL
	optEarlyRefresh
	optServeStale
	optCompress
	optEncrypt
)

// site is where an option is given: NewCache or one of the calls.
type site uint8

const (
	atNewCache site = 1 << iota
	atGet
	atFetch // Fetch and Wrap
	atFetchMany
	atSet
	atWarm
	atDelete
)

var siteNames = map[site]string{atNewCache: "NewCache", atGet: "Get", atFetch: "Fetch",
	atFetchMany: "FetchMany", atSet: "Set", atWarm: "Warm", atDelete: "Delete"}

const (
	atCalls   = atGet | atFetch | atFetchMany | atSet | atWarm | atDelete
	atWriters = atFetch | atFetchMany | atSet | atWarm // calls that store a value
)

var optNames = [...]string{optTTL: "TTL", optL1TTL: "L1TTL", optVersion: "Version",
	optTenant: "Tenant", optSuffix: "Suffix", optCodec: "Codec", optNoL1: "NoL1", optReload: "Reload",
	optNegativeTTL: "NegativeTTL", optEarlyRefresh: "EarlyRefresh", optServeStale: "ServeStale",
	optCompress: "Compress", optEncrypt: "Encrypt"}

// appliesTo says where each option may be given.
var appliesTo = [...]site{
	optTTL:     atNewCache | atWriters,
	optL1TTL:   atNewCache | atWriters | atGet,
	optVersion: atNewCache | atCalls,
	optTenant:  atCalls,
	optSuffix:  atCalls,
	optCodec:   atNewCache,
	optNoL1:    atNewCache | atGet | atFetch | atFetchMany,
	optReload:  atFetch | atFetchMany,

	optNegativeTTL:  atNewCache,
	optEarlyRefresh: atNewCache,
	optServeStale:   atNewCache,
	optCompress:     atNewCache,
	optEncrypt:      atNewCache,
}

// TTL sets how long values live in Redis (in L1-only mode, in the
// process). On NewCache, for the cache; on Fetch, Wrap, FetchMany, Set and
// Warm, for the values that call stores. Default: Options.TTL.
func TTL(d time.Duration) Option { return Option{kind: optTTL, d: d} }

// L1TTL sets the longest a value stays in the in-process tier, never
// longer than its TTL: a bound on staleness should an invalidation be
// lost. On NewCache, for the cache; on Get, Fetch, Wrap, FetchMany, Set and
// Warm, for the values that call keeps. Default: Options.L1TTL.
func L1TTL(d time.Duration) Option { return Option{kind: optL1TTL, d: d} }

// Version sets the version part of keys, e.g. "v2" after a schema change.
// On NewCache, for the cache; on a call, for that call. Default: the key
// builder's ("v1").
func Version(v string) Option { return Option{kind: optVersion, s: v} }

// Tenant sets the tenant of a call's key, overriding the context's (see
// keys.WithTenant). Calls only.
func Tenant(id string) Option { return Option{kind: optTenant, s: id} }

// Suffix sets a variation suffix of a call's key, e.g. "with_memberships".
// Calls only. Default: none.
func Suffix(s string) Option { return Option{kind: optSuffix, s: s} }

// Codec sets how the cache encodes values in Redis: any value with
// Marshal and Unmarshal methods of encoding/json's shape. NewCache only.
// Default: encoding/json, the format the Python template reads and writes.
func Codec(c interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}) Option {
	return Option{kind: optCodec, codec: c}
}

// NoL1 keeps values out of the in-process tier. On NewCache, for every
// value of the cache: each read goes to Redis, for values that must never
// be served from a copy. On Get, Fetch, Wrap and FetchMany, that call
// neither reads nor keeps an in-process copy (Fetch still uses Redis).
// Default: off.
func NoL1() Option { return Option{kind: optNoL1} }

// Reload makes Fetch, Wrap or FetchMany load the value and store it in
// both tiers whatever they hold, as the Python template's conditional
// caching does; processes holding a copy drop it. Default: off.
func Reload() Option { return Option{kind: optReload} }

// NegativeTTL caches a loader's ErrNotFound for d, in both tiers, so that
// a flood of requests for an id that does not exist costs one load per d
// across processes; Get and Fetch then return ErrNotFound without loading.
// The absence is stored in Redis as JSON null, which the Python template
// reads as a miss, and Set and Delete replace it like any value; every
// cache reads a null as a cached absence whether or not it sets this
// option (so a nil V is never stored as data). NewCache only. Default:
// absences are not cached.
func NegativeTTL(d time.Duration) Option { return Option{kind: optNegativeTTL, d: d} }

// EarlyRefresh reloads a hot value in the background before its TTL ends,
// so that callers never wait for its load: each Fetch hit draws, as
// XFetch does (Vattani et al., VLDB 2015), whether to refresh now, with a
// probability that rises as the TTL runs out, faster for values that take
// longer to load (δ, the load's duration) and for a larger beta. The
// refresh takes the key's lease without waiting, so one process refreshes
// the key while the others keep serving it, and it stores nothing if the
// key was written meanwhile. NewCache only. Typical beta: 1. Default: off.
func EarlyRefresh(beta float64) Option { return Option{kind: optEarlyRefresh, f: beta} }

// ServeStale lets Fetch serve a value for up to d past its TTL while one
// background refresh (as EarlyRefresh's) replaces it, and keep serving it
// within that window when the loader fails (the database is down):
// counted, and logged at most once a second. Values live in Redis for
// their TTL plus d (what a Python reader sees too). An invalidated or
// deleted value is never served. NewCache only. Default: off.
func ServeStale(d time.Duration) Option { return Option{kind: optServeStale, d: d} }

// Compress stores values whose encoding is at least minBytes long (zero:
// 1 KiB) compressed with algorithm, "s2" (faster) or "zstd" (smaller), in
// an envelope that starts with a byte no JSON or UTF-8 text can start
// with, so other readers (the Python template) see a value they cannot
// read, never wrong data. Every cache reads compressed values whatever its
// options; MaxValueBytes applies to the stored size. NewCache only.
// Default: plain JSON.
func Compress(algorithm string, minBytes int) Option {
	return Option{kind: optCompress, s: algorithm, n: minBytes}
}

// Encrypt seals values with AES-256-GCM under keys[keyID], for resources
// that must not sit in Redis in clear. keys holds 32-byte keys by id: a
// value names the key that sealed it, so for rotation add a new key, make
// it keyID, and keep the old one until its values have expired. Each
// value's full Redis key is bound to its ciphertext, which therefore
// cannot be replayed under another key or tenant. A value that does not
// open (an unknown key, a wrong one, tampering) is a miss, counted in
// cache_decode_errors_total and left in Redis. Compression, if on, comes
// first. NewCache only. Default: off.
func Encrypt(keyID string, keys map[string][]byte) Option {
	return Option{kind: optEncrypt, s: keyID, keys: keys}
}

// codec is what Codec takes.
type codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// jsonCodec is the default codec.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// call is the resolved form of a cache's or a call's options.
type call struct {
	ttl, l1ttl time.Duration
	tenant     string
	version    string
	suffix     string
	codec      codec
	hasTenant  bool
	hasVersion bool
	noL1       bool
	reload     bool
	cache      *cacheOnly // what only NewCache sets; nil for a call
}

// cacheOnly is what options set for a whole cache only, kept out of call
// so that the calls' resolved options stay small.
type cacheOnly struct {
	fresh    freshness
	envelope envelope.Config
}

// only returns co's cache settings, made on first use.
func (co *call) only() *cacheOnly {
	if co.cache == nil {
		co.cache = &cacheOnly{}
	}
	return co.cache
}

// apply resolves opts given at o on top of co.
func (co call) apply(o site, opts []Option) (call, error) {
	for _, opt := range opts {
		if opt.kind == 0 || int(opt.kind) >= len(appliesTo) {
			return co, fmt.Errorf("tiered: %s: the zero Option", siteNames[o])
		}
		name := optNames[opt.kind]
		if appliesTo[opt.kind]&o == 0 {
			return co, fmt.Errorf("tiered: option %s does not apply to %s", name, siteNames[o])
		}
		switch opt.kind {
		case optTTL, optL1TTL:
			if opt.d <= 0 {
				return co, fmt.Errorf("tiered: %s(%v): must be positive", name, opt.d)
			}
			if opt.kind == optTTL {
				co.ttl = opt.d
			} else {
				co.l1ttl = opt.d
			}
		case optVersion:
			// the key builder validates it, as any key part
			co.version, co.hasVersion = opt.s, true
		case optTenant:
			co.tenant, co.hasTenant = opt.s, true
		case optSuffix:
			co.suffix = opt.s
		case optCodec:
			if opt.codec == nil {
				return co, errors.New("tiered: Codec(nil)")
			}
			co.codec = opt.codec
		case optNoL1:
			co.noL1 = true
		case optReload:
			co.reload = true
		case optNegativeTTL, optServeStale:
			if opt.d <= 0 {
				return co, fmt.Errorf("tiered: %s(%v): must be positive", name, opt.d)
			}
			if opt.kind == optNegativeTTL {
				co.only().fresh.negTTL = opt.d
			} else {
				co.only().fresh.staleFor = opt.d
			}
		case optCompress:
			if opt.s == "" {
				return co, errors.New(`tiered: Compress(""): name "s2" or "zstd"`)
			}
			co.only().envelope.Compression, co.only().envelope.MinSize = opt.s, opt.n
		case optEncrypt:
			if opt.s == "" || len(opt.keys) == 0 {
				return co, errors.New("tiered: Encrypt: a key id and its key are required")
			}
			co.only().envelope.KeyID, co.only().envelope.Keys = opt.s, opt.keys
		case optEarlyRefresh:
			if !(opt.f > 0) || math.IsInf(opt.f, 0) {
				return co, fmt.Errorf("tiered: EarlyRefresh(%v): must be positive", opt.f)
			}
			co.only().fresh.beta = opt.f
		}
	}
	return co, nil
}

// resolve returns the options of one call given at o.
func (c *Cache[V]) resolve(o site, opts []Option) (call, error) {
	if len(opts) == 0 {
		return c.base, nil
	}
	co, err := c.base.apply(o, opts)
	co.l1ttl = min(co.l1ttl, co.ttl)
	return co, err
}
