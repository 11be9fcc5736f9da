package tiered

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/keys"
)

// NewFromEnv returns a Client configured as the Python template configures
// its cache, from the same environment variables with the same defaults:
//
//	REDIS_URL                     unset: no Redis (in-process tier only), logged
//	REDIS_POOL_SIZE               10
//	REDIS_POOL_TIMEOUT            5 (seconds)
//	REDIS_SOCKET_CONNECT_TIMEOUT  5 (seconds)
//	REDIS_SOCKET_TIMEOUT          5 (seconds)
//	REDIS_DEFAULT_TTL             3600 (seconds)
//	CACHE_KEY_PREFIX              app
//	ENFORCE_TENANT_ISOLATION      true
//
// It builds the go-redis client itself, with ContextTimeoutEnabled, and
// closes it on Close. The fields of opts that these variables do not set
// (Registerer, Logger, L1TTL ...) apply as given; Redis, Keys and TTL must be
// left zero. A bad value is an error naming the variable.
func NewFromEnv(app string, opts Options) (*Client, error) {
	if opts.Redis != nil || opts.Keys != nil || opts.TTL != 0 {
		return nil, errors.New("tiered: NewFromEnv sets Redis, Keys and TTL from the environment; leave them zero")
	}
	o, rdb, err := optionsFromEnv(app, opts, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	c, err := New(o)
	if err != nil {
		if rdb != nil {
			_ = rdb.Close()
		}
		return nil, err
	}
	if rdb == nil {
		c.opts.Logger.Warn("Redis not configured (REDIS_URL unset). Caching disabled: values are kept in-process only.")
	}
	c.ownedRedis = rdb
	return c, nil
}

// optionsFromEnv fills opts from the template's variables, read by lookup.
func optionsFromEnv(app string, opts Options, lookup func(string) (string, bool)) (Options, *redis.Client, error) {
	env := envReader{lookup: lookup}
	prefix := env.str("CACHE_KEY_PREFIX", app)
	enforce := env.bool("ENFORCE_TENANT_ISOLATION", true)
	ttl := env.seconds("REDIS_DEFAULT_TTL", time.Hour)
	poolSize := env.int("REDIS_POOL_SIZE", 10)
	poolTimeout := env.seconds("REDIS_POOL_TIMEOUT", 5*time.Second)
	dialTimeout := env.seconds("REDIS_SOCKET_CONNECT_TIMEOUT", 5*time.Second)
	socketTimeout := env.seconds("REDIS_SOCKET_TIMEOUT", 5*time.Second)
	url, hasURL := lookup("REDIS_URL")
	if env.err != nil {
		return opts, nil, env.err
	}
	var kopts []keys.Option
	if enforce {
		kopts = append(kopts, keys.EnforceTenantIsolation())
	}
	kb, err := keys.New(prefix, kopts...)
	if err != nil {
		return opts, nil, fmt.Errorf("tiered: CACHE_KEY_PREFIX=%q: %w", prefix, err)
	}
	opts.Keys, opts.TTL = kb, ttl
	if !hasURL || strings.TrimSpace(url) == "" {
		return opts, nil, nil
	}
	ro, err := redis.ParseURL(url)
	if err != nil {
		return opts, nil, fmt.Errorf("tiered: REDIS_URL: %w", err)
	}
	ro.PoolSize, ro.PoolTimeout = poolSize, poolTimeout
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = dialTimeout, socketTimeout, socketTimeout
	ro.ContextTimeoutEnabled = true
	rdb := redis.NewClient(ro)
	opts.Redis = rdb
	return opts, rdb, nil
}

// envReader reads typed variables, keeping the first error.
type envReader struct {
	lookup func(string) (string, bool)
	err    error
}

func (e *envReader) raw(name string) (string, bool) {
	v, ok := e.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (e *envReader) fail(name, v, want string) {
	if e.err == nil {
		e.err = fmt.Errorf("tiered: %s=%q: want %s", name, v, want)
	}
}

func (e *envReader) str(name, def string) string {
	if v, ok := e.raw(name); ok {
		return v
	}
	return def
}

func (e *envReader) int(name string, def int) int {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		e.fail(name, v, "a positive whole number")
		return def
	}
	return n
}

// seconds reads a number of seconds, as the template's settings are.
func (e *envReader) seconds(name string, def time.Duration) time.Duration {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f <= 0 || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) {
		e.fail(name, v, "a positive number of seconds")
		return def
	}
	return time.Duration(f * float64(time.Second))
}

// bool reads a boolean as Pydantic does: true/false, 1/0, yes/no, on/off,
// t/f, y/n, in any case.
func (e *envReader) bool(name string, def bool) bool {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on", "t", "y":
		return true
	case "false", "0", "no", "off", "f", "n":
		return false
	}
	e.fail(name, v, "true or false")
	return def
}
