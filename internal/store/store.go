package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/guard"
	"github.com/tieredcache/tieredcache/internal/pipe"
)

// ErrMiss is returned when a key holds no value.
var ErrMiss = errors.New("remote: miss")

// Client is the part of go-redis a Store needs. redis.UniversalClient
// satisfies it, and so do *redis.Client, *redis.ClusterClient and
// *redis.Ring.
type Client interface {
	redis.Cmdable
	redis.Scripter
}

// Entry is one value to write, with the lease key that guards its loads.
type Entry struct {
	Key, Lease string
	Value      []byte
	TTL        time.Duration // zero or negative: no expiry
}

// Config configures a Store.
type Config struct {
	// Timeout bounds each call; zero means only the caller's context does.
	// go-redis applies context deadlines to socket reads and writes only
	// when the client was made with ContextTimeoutEnabled; otherwise its
	// own ReadTimeout (3 s by default) bounds a hung server.
	Timeout time.Duration
	// Guard, if set, admits each call and hears its outcome: a circuit
	// breaker. Allow returns an error to refuse a call; otherwise the caller
	// reports the call's error (nil on success) to done. gobreaker's
	// TwoStepCircuitBreaker satisfies it. A call the
	// guard refuses fails with the guard's error, without touching Redis.
	// A call abandoned because the caller's context ended is reported as
	// context.Canceled, whatever Redis did.
	Guard interface {
		Allow() (done func(err error), err error)
	}
}

// Store reads and writes values in Redis.
type Store struct {
	rdb     Client
	clock   *serverClock
	cfg     Config
	ordered bool // a single node: MGET works, pipelines run in order
}

// New returns a Store over rdb.
func New(rdb Client, cfg Config) *Store {
	return &Store{rdb: rdb, cfg: cfg, clock: newServerClock(), ordered: pipe.Ordered(rdb)}
}

// call runs f under the guard and the timeout.
func (s *Store) call(ctx context.Context, f func(ctx context.Context) error) error {
	return guard.Run(ctx, s.cfg.Guard, s.cfg.Timeout, f)
}

// Get returns the value of key, or ErrMiss.
//
// ttl is how long the value has left in Redis (PTTL, in the same round
// trip), zero when it does not expire: a copy kept elsewhere must not
// outlive it, since Redis may report the expiry late (it expires keys
// lazily or by sampling).
func (s *Store) Get(ctx context.Context, key string) (data []byte, ttl time.Duration, err error) {
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	err = s.call(ctx, func(ctx context.Context) error {
		// PTTL first: a key that expires between the two reads is then a
		// miss, never a value without its TTL.
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			pttl = p.PTTL(ctx, key)
			get = p.Get(ctx, key)
			return nil
		})
		return pipe.Err[redis.Cmder](err, pttl, get)
	})
	if err == nil {
		data, err = get.Bytes()
	}
	switch {
	case err == nil && pttl.Val() == -2:
		return nil, 0, ErrMiss // expired between the two reads
	case err == nil:
		return data, pipe.TTLLeft(pttl.Val()), nil
	case errors.Is(err, redis.Nil):
		return nil, 0, ErrMiss
	default:
		return nil, 0, fmt.Errorf("remote: GET %s: %w", key, err)
	}
}

// GetWithLease returns the value of key (nil if absent), its TTL as Get
// does, and whether its lease is held, in one round trip.
func (s *Store) GetWithLease(ctx context.Context, key, lease string) ([]byte, time.Duration, bool, error) {
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	var exists *redis.IntCmd
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			pttl = p.PTTL(ctx, key)
			get = p.Get(ctx, key)
			exists = p.Exists(ctx, lease)
			return nil
		})
		return pipe.Err[redis.Cmder](err, pttl, get, exists)
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, false, fmt.Errorf("remote: GET %s: %w", key, err)
	}
	b, err := get.Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, false, fmt.Errorf("remote: GET %s: %w", key, err)
	}
	n, err := exists.Result()
	if err != nil {
		return nil, 0, false, fmt.Errorf("remote: EXISTS %s: %w", lease, err)
	}
	if pttl.Val() == -2 {
		b = nil // expired between the reads
	}
	return b, pipe.TTLLeft(pttl.Val()), n > 0, nil
}

// MGet returns the values of keys in order, nil where a key holds none, in
// one round trip per batch: MGET on a single node, pipelined GETs where keys may live
// on different nodes (Cluster, Ring), so keys in different hash slots never
// fail with CROSSSLOT.
//
// Keys go in batches of mgetBatch, one call each, so that a large batch
// stays well inside one call's timeout.
func (s *Store) MGet(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	out := make([][]byte, 0, len(keys))
	for start := 0; start < len(keys); start += mgetBatch {
		vals, err := s.mget(ctx, keys[start:min(start+mgetBatch, len(keys))])
		if err != nil {
			return nil, err
		}
		out = append(out, vals...)
	}
	return out, nil
}

// mgetBatch is the most keys one MGet call reads.
const mgetBatch = 500

func (s *Store) mget(ctx context.Context, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	if s.ordered {
		var vals []any
		err := s.call(ctx, func(ctx context.Context) error {
			var err error
			vals, err = s.rdb.MGet(ctx, keys...).Result()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("remote: MGET (%d keys): %w", len(keys), err)
		}
		for i, v := range vals {
			if str, ok := v.(string); ok {
				out[i] = []byte(str)
			}
		}
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(keys))
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.Get(ctx, k)
			}
			return nil
		})
		return pipe.Err(err, cmds...)
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("remote: GET pipeline (%d keys): %w", len(keys), err)
	}
	for i, c := range cmds {
		b, err := c.Bytes()
		switch {
		case err == nil:
			out[i] = b
		case !errors.Is(err, redis.Nil):
			return nil, fmt.Errorf("remote: GET %s: %w", keys[i], err)
		}
	}
	return out, nil
}

// setScript puts a staged value in place unless its deadline (ARGV[1], µs
// of Redis's clock; 0 for none) has passed, clears the key's lease so that a
// load that started before this write cannot overwrite it, and publishes
// ARGV[3] on channel ARGV[2] when one is given. KEYS: stage, key, lease.
// ARGV[4] is "1" when the value keeps no TTL. It replies {applied, TIME}.
var setScript = redis.NewScript(`
local t = redis.call('TIME')
if ARGV[1] ~= '0' and t[1] * 1000000 + t[2] > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {0, tonumber(t[1]), tonumber(t[2])}
end
redis.call('RENAME', KEYS[1], KEYS[2])
if ARGV[4] == '1' then redis.call('PERSIST', KEYS[2]) end
redis.call('DEL', KEYS[3])
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return {1, tonumber(t[1]), tonumber(t[2])}
`)

// delScript deletes a value and its lease and publishes the invalidation
// (with ARGV[3] "1", only if a lease was held: a load under way).
var delScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
local l = redis.call('DEL', KEYS[2])
if ARGV[1] ~= '' and (ARGV[3] ~= '1' or l == 1) then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n
`)

// stageTTL bounds a staged value's life should its script never run; a
// value without a TTL is made persistent by the script.
const stageTTL = time.Minute

func (s *Store) staged(e Entry, deadline int64, channel string, msg []byte) pipe.Staged {
	ttl, persist := e.TTL, "0"
	if ttl <= 0 {
		ttl, persist = stageTTL, "1"
	}
	return pipe.Staged{
		Stage: pipe.StageKey(e.Lease), Value: e.Value, TTL: ttl,
		Keys: []string{"", e.Key, e.Lease},
		Args: []any{deadline, channel, msg, persist},
	}
}

// Set writes e, clears its lease and publishes msg on channel (no publish
// when channel is empty), atomically, in one round trip. The value is
// staged under a key of its own with a plain SET and renamed into place by
// a script that refuses it past its deadline: a Set that returned an error
// can never land later over a newer write (see serverClock). On error Set
// returns only once that deadline has passed; a refused write wraps ErrLate.
func (s *Store) Set(ctx context.Context, e Entry, channel string, msg []byte) error {
	if err := s.setEntries(ctx, []Entry{e}, channel, [][]byte{msg}, true); err != nil {
		return fmt.Errorf("remote: SET %s: %w", e.Key, err)
	}
	return nil
}

// setEntries writes entries as Set does; inScript publishes msgs[i] from
// entry i's script, otherwise msgs follow the writes.
func (s *Store) setEntries(ctx context.Context, entries []Entry, channel string, msgs [][]byte, inScript bool) error {
	sent := s.clock.now()
	deadline, err := s.fenceDeadline(ctx, sent)
	if err != nil {
		return err
	}
	sent = s.clock.now()
	writes := make([]pipe.Staged, len(entries))
	for i, e := range entries {
		var m []byte
		ch := ""
		if inScript && channel != "" {
			ch, m = channel, msgs[i]
		}
		writes[i] = s.staged(e, deadline, ch, m)
		writes[i].Keys[0] = writes[i].Stage
	}
	var cmds []*redis.Cmd
	err = s.call(ctx, func(ctx context.Context) error {
		pubCh, pubMsgs := channel, msgs
		if inScript {
			pubCh, pubMsgs = "", nil
		}
		var err error
		cmds, err = pipe.RunStaged(ctx, s.rdb, s.ordered, setScript, writes, pubCh, pubMsgs)
		return err
	})
	if err != nil {
		s.settle(sent, err)
		return err
	}
	for _, c := range cmds {
		applied, err := s.fenceReply(c)
		if err != nil {
			return err
		}
		if !applied {
			return ErrLate
		}
	}
	return nil
}

// Delete removes key and its lease and publishes msg on channel (no publish
// when channel is empty), atomically. With ifLeased it publishes only if
// the lease was held: where Redis reports the key's deletion itself, that
// is the one case it does not (a load under way of a key already absent),
// and processes sharing that load must hear of the delete.
func (s *Store) Delete(ctx context.Context, key, lease, channel string, msg []byte, ifLeased bool) error {
	flag := "0"
	if ifLeased {
		flag = "1"
	}
	err := s.call(ctx, func(ctx context.Context) error {
		return delScript.Run(ctx, s.rdb, []string{key, lease}, channel, msg, flag).Err()
	})
	if err != nil {
		return fmt.Errorf("remote: DEL %s: %w", key, err)
	}
	return nil
}

// SetMany writes every entry as Set does, then publishes msgs on channel.
// On a single node that is one pipelined round trip; where keys live on
// several nodes the messages follow in a second one, once every write is
// done, so no process hears of a write before it can read it. It is not
// atomic: on error some entries may have been written, and the
// invalidations may not have been sent.
func (s *Store) SetMany(ctx context.Context, entries []Entry, channel string, msgs [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	if err := s.setEntries(ctx, entries, channel, msgs, false); err != nil {
		return fmt.Errorf("remote: SET pipeline (%d keys): %w", len(entries), err)
	}
	return nil
}

// writeThenPublish runs pipe.WriteThenPublish under the guard and timeout.
func (s *Store) writeThenPublish(ctx context.Context, writes func(context.Context, redis.Pipeliner), channel string, msgs [][]byte) error {
	return s.call(ctx, func(ctx context.Context) error {
		return pipe.WriteThenPublish(ctx, s.rdb, s.ordered, func(p redis.Pipeliner) { writes(ctx, p) }, channel, msgs)
	})
}

// DeleteMany removes each key with its lease (leases[i] guards keys[i]),
// then publishes msgs on channel (unless empty), as SetMany does. It is not
// atomic.
func (s *Store) DeleteMany(ctx context.Context, keys, leases []string, channel string, msgs [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	if len(leases) != len(keys) {
		return errors.New("remote: DeleteMany: keys and leases differ in length")
	}
	err := s.writeThenPublish(ctx, func(ctx context.Context, p redis.Pipeliner) {
		for i, k := range keys {
			p.Del(ctx, k, leases[i])
		}
	}, channel, msgs)
	if err != nil {
		return fmt.Errorf("remote: DEL pipeline (%d keys): %w", len(keys), err)
	}
	return nil
}
