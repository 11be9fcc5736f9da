package lock

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/guard"
	"github.com/tieredcache/tieredcache/internal/pipe"
)

// Errors of Acquire and Fill.
var (
	// ErrHeld is returned by Acquire when another caller holds the lock.
	ErrHeld = errors.New("lock: lease held by another loader")
	// ErrLost is returned by Fill when the lease no longer holds: a write
	// or delete of the key, a newer Take, or expiry came first. The value
	// must not be cached anywhere.
	ErrLost = errors.New("lock: lease lost before the fill")
	// ErrExists is returned by Fill when another writer, one that takes no
	// lease (another service), wrote the key meanwhile: a fill that does
	// not replace finds it holding a value, a replacing one under a lease
	// from Take finds a value other than the one it was taken over. The
	// fill never overwrites it.
	ErrExists = errors.New("lock: key written by another writer before the fill")
)

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

// Config configures a Leaser.
type Config struct {
	// TTL is how long a lease lasts unless filled or released. Required.
	TTL time.Duration
	// Timeout bounds each Redis call; zero means only the caller's context.
	Timeout time.Duration
	// Guard, if set, admits each call and hears its outcome: a circuit
	// breaker. Allow returns an error to refuse a call; otherwise the caller
	// reports the call's error (nil on success) to done. gobreaker's
	// TwoStepCircuitBreaker satisfies it.
	Guard interface {
		Allow() (done func(err error), err error)
	}
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

// Get is the read of memcache's leases: in one round trip it returns the
// value of valueKey, with how long it has left (zero: no expiry), or, when
// the key holds none, takes the lease on it (lease not nil) so that the
// caller loads it, or returns ErrHeld when another caller holds the lock.
// Reading and taking the lease at once saves the re-read a separate
// Acquire needs: no fill can land between them.
func (l *Leaser) Get(ctx context.Context, valueKey string) (value []byte, ttl time.Duration, lease *Lease, err error) {
	token, err := randomToken()
	if err != nil {
		return nil, 0, nil, err
	}
	le := &Lease{l: l, key: Key(valueKey), token: token, valueKey: valueKey}
	var reply []any
	err = l.call(ctx, func(ctx context.Context) error {
		var err error
		reply, err = getScript.Run(ctx, l.rdb, []string{le.key, valueKey}, token, l.cfg.TTL.Milliseconds()).Slice()
		return err
	})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("lock: get %s: %w", valueKey, err)
	}
	if len(reply) != 2 {
		return nil, 0, nil, fmt.Errorf("lock: get %s: unexpected reply %v", valueKey, reply)
	}
	n, _ := reply[1].(int64)
	switch v := reply[0].(type) {
	case string:
		return []byte(v), pipe.TTLLeft(time.Duration(n) * time.Millisecond), nil, nil
	case nil:
		if n == 1 {
			return nil, 0, le, nil
		}
		return nil, 0, nil, ErrHeld
	}
	return nil, 0, nil, fmt.Errorf("lock: get %s: unexpected reply %v", valueKey, reply)
}

// getScript returns {value, PTTL} of KEYS[2] when it holds a value; else it
// takes the lease KEYS[1] with token ARGV[1] for ARGV[2] ms unless held and
// returns {nil, 1} if it took it, {nil, 0} if not.
var getScript = redis.NewScript(`
local v = redis.call('GET', KEYS[2])
if v then return {v, redis.call('PTTL', KEYS[2])} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, 1} end
return {false, 0}
`)

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

// Take takes the lease on valueKey whoever holds it, revoking any other
// holder: its fill will fail. It is for a refresh, whose value must win
// over any load that started before it. The lease remembers a fingerprint
// of the value the key held when it was taken, and the refresh's fill
// (replacing) stores nothing if another writer, one that takes no lease
// (another service), changed it meanwhile.
func (l *Leaser) Take(ctx context.Context, valueKey string) (*Lease, error) {
	return l.fingerprinted(ctx, valueKey, false)
}

// Claim takes the lease on valueKey for a refresh of the value it holds,
// if nobody holds the lease: it returns ErrHeld otherwise, so that one
// process refreshes a key while the others keep serving the current value.
// Like Take's, the lease remembers a fingerprint of the value, and a
// replacing fill stores nothing if another writer changed it meanwhile.
func (l *Leaser) Claim(ctx context.Context, valueKey string) (*Lease, error) {
	return l.fingerprinted(ctx, valueKey, true)
}

// fingerprinted takes a lease that remembers the SHA-1 of the value it was
// taken over (Take), or with ifFree only when nobody holds it (Claim).
func (l *Leaser) fingerprinted(ctx context.Context, valueKey string, ifFree bool) (*Lease, error) {
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	le := &Lease{l: l, key: Key(valueKey), valueKey: valueKey}
	onlyIfFree, verb := "0", "take"
	if ifFree {
		onlyIfFree, verb = "1", "claim"
	}
	held := false
	err = l.call(ctx, func(ctx context.Context) error {
		fp, err := takeScript.Run(ctx, l.rdb, []string{le.key, valueKey}, token, l.cfg.TTL.Milliseconds(), onlyIfFree).Text()
		if errors.Is(err, redis.Nil) {
			held = true
			return nil // Redis answered; the lease is just taken
		}
		le.token = token + "|" + fp
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("lock: %s lease on %s: %w", verb, valueKey, err)
	case held:
		return nil, ErrHeld
	}
	return le, nil
}

// takeScript sets the lease (KEYS[1]) to the token ARGV[1] and the SHA-1
// of the value key's (KEYS[2]) current value, for ARGV[2] ms, and returns
// that fingerprint ("" for no value). With ARGV[3] "1" it does so only if
// the lease is free, and replies nil when it is held.
var takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[2])
local fp = ''
if v then fp = redis.sha1hex(v) end
if ARGV[3] == '1' then
  if not redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fp, 'NX', 'PX', ARGV[2]) then return false end
else
  redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fp, 'PX', ARGV[2])
end
return fp
`)

// AcquireMany tries once to take the leases on valueKeys in one pipelined
// round trip. The result is parallel to valueKeys, with nil where another
// caller holds the lock. The leases are plain keys holding a random
// token, as redislock makes them, so both kinds guard each other.
func (l *Leaser) AcquireMany(ctx context.Context, valueKeys []string) ([]*Lease, error) {
	if len(valueKeys) == 0 {
		return nil, nil
	}
	out := make([]*Lease, 0, len(valueKeys))
	for start := 0; start < len(valueKeys); start += batchKeys {
		leases, err := l.acquireBatch(ctx, valueKeys[start:min(start+batchKeys, len(valueKeys))])
		if err != nil {
			_ = l.release(context.WithoutCancel(ctx), nil, out)
			return nil, err
		}
		out = append(out, leases...)
	}
	return out, nil
}

func (l *Leaser) acquireBatch(ctx context.Context, valueKeys []string) ([]*Lease, error) {
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

// Lease is an obtained lock.
type Lease struct {
	l        *Leaser
	key      string
	token    string
	valueKey string
}

// fillScript puts a staged value in place while the lease still holds and,
// unless ARGV[2] is "1" (replace), only if the key is still absent; a
// replacing fill under a lease from Take only if the key still holds the
// value whose fingerprint the lease carries. It frees the lease and
// publishes ARGV[5] on channel ARGV[4] when one is given. KEYS: lease,
// stage, key. ARGV[3] is "1" when the value keeps no TTL. It replies 1
// (stored), 0 (lease lost) or 2 (another writer wrote the key).
var fillScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('DEL', KEYS[1])
local written
if ARGV[2] ~= '1' then
  written = redis.call('EXISTS', KEYS[3]) == 1
else
  local fp = string.match(ARGV[1], '|(.*)$')
  if fp then
    local v = redis.call('GET', KEYS[3])
    written = (v and redis.sha1hex(v) or '') ~= fp
  end
end
if written then
  redis.call('DEL', KEYS[2])
  return 2
end
redis.call('RENAME', KEYS[2], KEYS[3])
if ARGV[3] == '1' then redis.call('PERSIST', KEYS[3]) end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
`)

// releaseScript frees a lease that is still ours.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Fill stores value under the lease's value key for ttl if the lease still
// holds and, unless replace, the key is still absent; it releases the lease
// and publishes msg on channel (no publish when channel is empty), in one
// round trip. The value travels in a plain SET to a staging key that a
// small script renames into place. It returns nil when the value was
// stored, ErrLost or ErrExists when it was not (and must not be cached),
// another error when Redis failed.
func (le *Lease) Fill(ctx context.Context, value []byte, ttl time.Duration, replace bool, channel string, msg []byte) error {
	var cmds []*redis.Cmd
	err := le.l.call(ctx, func(ctx context.Context) error {
		var err error
		cmds, err = pipe.RunStaged(ctx, le.l.rdb, true, fillScript,
			[]pipe.Staged{le.staged(value, ttl, replace, channel, msg)}, "", nil)
		return err
	})
	if err == nil {
		err = fillResult(cmds[0])
	}
	if err != nil && !errors.Is(err, ErrLost) && !errors.Is(err, ErrExists) {
		return fmt.Errorf("lock: fill %s: %w", le.valueKey, err)
	}
	return err
}

func (le *Lease) staged(value []byte, ttl time.Duration, replace bool, channel string, msg []byte) pipe.Staged {
	persist := "0"
	if ttl <= 0 {
		ttl, persist = stageTTL, "1"
	}
	rep := "0"
	if replace {
		rep = "1"
	}
	stage := pipe.StageKey(le.key)
	return pipe.Staged{
		Stage: stage, Value: value, TTL: ttl,
		Keys: []string{le.key, stage, le.valueKey},
		Args: []any{le.token, rep, persist, channel, msg},
	}
}

// stageTTL bounds a staged value's life should its script never run.
const stageTTL = time.Minute

func fillResult(c *redis.Cmd) error {
	n, err := c.Int()
	switch {
	case err != nil:
		return err
	case n == 0:
		return ErrLost
	case n == 2:
		return ErrExists
	}
	return nil
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

// Batches of FillMany and AcquireMany: each Redis call carries at most
// batchKeys keys and about batchBytes of values, so that it stays well
// inside one call's timeout.
const (
	batchKeys  = 200
	batchBytes = 1 << 20
)

// FillMany runs Fill (not replacing, unless replace) for each entry,
// without publishing, and then publishes msgs on channel (unless empty):
// in batches, each one pipelined round trip on a single node; where keys
// live on several nodes a batch's messages follow once its fills are done.
// The result is parallel to fills: nil, ErrLost or ErrExists for each, or
// the error of the batch that failed (some of whose values may have been
// stored); err is the first such failure. Messages go with the last batch.
func (l *Leaser) FillMany(ctx context.Context, fills []Fill, replace bool, channel string, msgs [][]byte) (out []error, err error) {
	out = make([]error, len(fills))
	for start := 0; start < len(fills); {
		end, size := start, 0
		for end < len(fills) && end-start < batchKeys && (end == start || size+len(fills[end].Value) <= batchBytes) {
			size += len(fills[end].Value)
			end++
		}
		var ch string
		var ms [][]byte
		if end == len(fills) {
			ch, ms = channel, msgs
		}
		if berr := l.fillBatch(ctx, fills[start:end], replace, ch, ms, out[start:end]); berr != nil {
			for i := start; i < end; i++ {
				out[i] = berr
			}
			err = cmp.Or(err, berr)
		}
		start = end
	}
	return out, err
}

func (l *Leaser) fillBatch(ctx context.Context, fills []Fill, replace bool, channel string, msgs [][]byte, out []error) error {
	writes := make([]pipe.Staged, len(fills))
	for i, f := range fills {
		writes[i] = f.Lease.staged(f.Value, f.TTL, replace, "", nil)
	}
	var cmds []*redis.Cmd
	err := l.call(ctx, func(ctx context.Context) error {
		var err error
		cmds, err = pipe.RunStaged(ctx, l.rdb, l.ordered, fillScript, writes, channel, msgs)
		return err
	})
	if err != nil {
		return fmt.Errorf("lock: fill %d keys: %w", len(fills), err)
	}
	for i, c := range cmds {
		if out[i] = fillResult(c); out[i] != nil && !errors.Is(out[i], ErrLost) && !errors.Is(out[i], ErrExists) {
			return fmt.Errorf("lock: fill %s: %w", fills[i].Lease.valueKey, out[i])
		}
	}
	return nil
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
func (l *Leaser) release(ctx context.Context, g guard.Guard, leases []*Lease) error {
	var errs []error
	for start := 0; start < len(leases); start += batchKeys {
		batch := leases[start:min(start+batchKeys, len(leases))]
		errs = append(errs, guard.Run(ctx, g, l.cfg.Timeout, func(ctx context.Context) error {
			pl := l.rdb.Pipeline()
			for _, le := range batch {
				if le != nil {
					releaseScript.Eval(ctx, pl, []string{le.key}, le.token)
				}
			}
			_, err := pl.Exec(ctx)
			return err
		}))
	}
	return errors.Join(errs...)
}
