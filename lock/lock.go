package lock

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/guard"
	"github.com/tieredcache/tieredcache/internal/pipe"
)

// ErrHeld is returned by Acquire when another caller holds the lease.
var ErrHeld = errors.New("lock: lease held by another loader")

const leaseSuffix = ":lease"

// Key returns the lease key for valueKey. It hashes to the same Redis
// Cluster slot as valueKey, so scripts can touch both: a key without a
// hash tag gets its whole text as the lease key's tag; a key with one keeps
// it.
func Key(valueKey string) string {
	if hasHashTag(valueKey) {
		return valueKey + leaseSuffix
	}
	return "{" + valueKey + "}" + leaseSuffix
}

// hasHashTag reports whether Redis Cluster would hash only part of key: a
// '{' followed later by a '}' with at least one byte between them.
func hasHashTag(key string) bool {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(key[open+1:], '}')
	return end > 0
}

// Client is the part of go-redis a Leaser needs; redis.UniversalClient
// satisfies it.
type Client interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// Guard admits or refuses Redis calls: a circuit breaker (see
// remote.Guard). gobreaker's TwoStepCircuitBreaker satisfies it.
type Guard = guard.Guard

// Config configures a Leaser.
type Config struct {
	// TTL is how long a lease lasts unless filled or released. Required.
	TTL time.Duration
	// Timeout bounds each Redis call; zero means only the caller's context.
	Timeout time.Duration
	// Guard, if set, admits each call and hears its outcome.
	Guard Guard
}

// Leaser obtains leases. It is safe for concurrent use.
type Leaser struct {
	rdb     Client
	locks   *redislock.Client
	cfg     Config
	ordered bool // one node: a pipeline runs in order
}

// New returns a Leaser.
func New(rdb Client, cfg Config) (*Leaser, error) {
	if cfg.TTL <= 0 {
		return nil, errors.New("lock: lease TTL must be positive")
	}
	return &Leaser{rdb: rdb, locks: redislock.New(rdb), cfg: cfg, ordered: pipe.Ordered(rdb)}, nil
}

func (l *Leaser) call(ctx context.Context, f func(ctx context.Context) error) error {
	return guard.Run(ctx, l.cfg.Guard, l.cfg.Timeout, f)
}

// Acquire tries once, without waiting, to take the lease on valueKey. It
// returns ErrHeld if someone else holds it and another error if Redis
// could not answer.
func (l *Leaser) Acquire(ctx context.Context, valueKey string) (*Lease, error) {
	// No retry strategy: a lease that is taken means a load is under way,
	// and the caller waits for its result rather than for the lock.
	var lk *redislock.Lock
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		lk, err = l.locks.Obtain(ctx, Key(valueKey), l.cfg.TTL, nil)
		if errors.Is(err, redislock.ErrNotObtained) {
			return nil // Redis answered; the lease is just taken
		}
		return err
	})
	switch {
	case err == nil && lk == nil:
		return nil, ErrHeld
	case err == nil:
		return &Lease{l: l, key: lk.Key(), token: lk.Token(), valueKey: valueKey}, nil
	default:
		// redislock returns ctx.Err() when the deadline passes mid-call.
		return nil, fmt.Errorf("lock: obtain lease on %s: %w", valueKey, err)
	}
}

// AcquireMany tries once to take the leases on valueKeys in one pipelined
// round trip. The result is parallel to valueKeys, with nil where another
// caller holds the lease. The leases are plain keys holding a random
// token, as redislock makes them, so both kinds guard each other.
func (l *Leaser) AcquireMany(ctx context.Context, valueKeys []string) ([]*Lease, error) {
	if len(valueKeys) == 0 {
		return nil, nil
	}
	leases := make([]*Lease, len(valueKeys))
	cmds := make([]*redis.BoolCmd, len(valueKeys))
	for i, k := range valueKeys {
		token, err := randomToken()
		if err != nil {
			return nil, err
		}
		leases[i] = &Lease{l: l, key: Key(k), token: token, valueKey: k}
	}
	err := l.call(ctx, func(ctx context.Context) error {
		pl := l.rdb.Pipeline()
		for i, le := range leases {
			cmds[i] = pl.SetNX(ctx, le.key, le.token, l.cfg.TTL)
		}
		_, err := pl.Exec(ctx)
		// A SET NX that finds the key answers false, not an error.
		return pipe.Err(err, cmds...)
	})
	if err != nil {
		// Some SETs may have run: free whatever carries our tokens. Not
		// through the guard: this is cleanup after the failure it heard.
		_ = l.release(context.WithoutCancel(ctx), nil, leases)
		return nil, fmt.Errorf("lock: obtain %d leases: %w", len(valueKeys), err)
	}
	for i, c := range cmds {
		if !c.Val() {
			leases[i] = nil
		}
	}
	return leases, nil
}

func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lock: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Lease is an obtained lease.
type Lease struct {
	l        *Leaser
	key      string
	token    string
	valueKey string
}

// Key returns the lease's Redis key.
func (le *Lease) Key() string { return le.key }

// Token returns the lease's random token.
func (le *Lease) Token() string { return le.token }

// ValueKey returns the key of the value the lease guards.
func (le *Lease) ValueKey() string { return le.valueKey }

// fillScript stores the value only while the lease still holds; it then
// frees the lease and announces the fill so waiters elsewhere wake.
var fillScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
`)

// releaseScript frees a lease that is still ours.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Fill stores value under the lease's value key for ttl if the lease still
// holds, releases the lease, and publishes msg on channel (no publish when
// channel is empty), all atomically. It reports whether the value was
// stored; false means a write or delete of the key, or the lease's expiry,
// came first, and the value must not be cached anywhere.
func (le *Lease) Fill(ctx context.Context, value []byte, ttl time.Duration, channel string, msg []byte) (bool, error) {
	var n int
	err := le.l.call(ctx, func(ctx context.Context) error {
		var err error
		n, err = fillScript.Run(ctx, le.l.rdb, []string{le.key, le.valueKey},
			le.token, value, pxArg(ttl), channel, msg).Int()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("lock: fill %s: %w", le.valueKey, err)
	}
	return n == 1, nil
}

// Release frees the lease without storing anything. Releasing a lease that
// was lost is not an error.
func (le *Lease) Release(ctx context.Context) error {
	err := le.l.call(ctx, func(ctx context.Context) error {
		return releaseScript.Run(ctx, le.l.rdb, []string{le.key}, le.token).Err()
	})
	if err != nil {
		return fmt.Errorf("lock: release %s: %w", le.valueKey, err)
	}
	return nil
}

// Fill is one value for FillMany.
type Fill struct {
	Lease *Lease
	Value []byte
	TTL   time.Duration
}

// FillMany runs Fill for each entry, without publishing, and then
// publishes msgs on channel (unless empty): in one pipelined round trip on
// a single node; where keys live on several nodes the messages follow once
// every fill is done. The result is parallel to fills: whether each value
// was stored. On error, some values may have been stored.
func (l *Leaser) FillMany(ctx context.Context, fills []Fill, channel string, msgs [][]byte) ([]bool, error) {
	if len(fills) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.Cmd, len(fills))
	err := l.call(ctx, func(ctx context.Context) error {
		// EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and
		// Redis compiles a script once whichever way it arrives.
		return pipe.WriteThenPublish(ctx, l.rdb, l.ordered, func(p redis.Pipeliner) {
			for i, f := range fills {
				cmds[i] = fillScript.Eval(ctx, p, []string{f.Lease.key, f.Lease.valueKey},
					f.Lease.token, f.Value, pxArg(f.TTL), "", "")
			}
		}, channel, msgs)
	})
	if err != nil {
		return nil, fmt.Errorf("lock: fill %d keys: %w", len(fills), err)
	}
	out := make([]bool, len(fills))
	for i, c := range cmds {
		n, _ := c.Int()
		out[i] = n == 1
	}
	return out, nil
}

// ReleaseMany releases leases in one pipelined round trip.
func (l *Leaser) ReleaseMany(ctx context.Context, leases []*Lease) error {
	if len(leases) == 0 {
		return nil
	}
	if err := l.release(ctx, l.cfg.Guard, leases); err != nil {
		return fmt.Errorf("lock: release %d leases: %w", len(leases), err)
	}
	return nil
}

// release frees leases under g (none: unguarded, for cleanup after a
// failure the guard already heard of) and the timeout.
func (l *Leaser) release(ctx context.Context, g Guard, leases []*Lease) error {
	return guard.Run(ctx, g, l.cfg.Timeout, func(ctx context.Context) error {
		pl := l.rdb.Pipeline()
		for _, le := range leases {
			releaseScript.Eval(ctx, pl, []string{le.key}, le.token)
		}
		_, err := pl.Exec(ctx)
		return err
	})
}

// pxArg renders ttl in milliseconds for the script; "0" means no expiry.
func pxArg(ttl time.Duration) string {
	if ttl <= 0 {
		return "0"
	}
	return strconv.FormatInt(max(int64(ttl/time.Millisecond), 1), 10)
}
