package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// Guard admits or refuses Redis calls: a circuit breaker. Allow returns
// an error to refuse a call; otherwise the caller reports the call's error
// (nil on success) to done. gobreaker's TwoStepCircuitBreaker satisfies it.
type Guard = guard.Guard

// StoreConfig configures a Store.
type StoreConfig struct {
	// Timeout bounds each call; zero means only the caller's context does.
	// go-redis applies context deadlines to socket reads and writes only
	// when the client was made with ContextTimeoutEnabled; otherwise its
	// own ReadTimeout (3 s by default) bounds a hung server.
	Timeout time.Duration
	// Guard, if set, admits each call and hears its outcome. A call the
	// guard refuses fails with the guard's error, without touching Redis.
	// A call abandoned because the caller's context ended is reported as
	// context.Canceled, whatever Redis did.
	Guard Guard
}

// Store reads and writes values in Redis.
type Store struct {
	rdb     Client
	cfg     StoreConfig
	ordered bool // a single node: MGET works, pipelines run in order
}

// NewStore returns a Store over rdb.
func NewStore(rdb Client, cfg StoreConfig) *Store {
	return &Store{rdb: rdb, cfg: cfg, ordered: pipe.Ordered(rdb)}
}

// call runs f under the guard and the timeout.
func (s *Store) call(ctx context.Context, f func(ctx context.Context) error) error {
	return guard.Run(ctx, s.cfg.Guard, s.cfg.Timeout, f)
}

// Get returns the value of key, or ErrMiss.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		b, err = s.rdb.Get(ctx, key).Bytes()
		return err
	})
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, redis.Nil):
		return nil, ErrMiss
	default:
		return nil, fmt.Errorf("remote: GET %s: %w", key, err)
	}
}

// GetWithLease returns the value of key (nil if absent) and whether its
// lease is held, in one round trip.
func (s *Store) GetWithLease(ctx context.Context, key, lease string) ([]byte, bool, error) {
	var get *redis.StringCmd
	var exists *redis.IntCmd
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			get = p.Get(ctx, key)
			exists = p.Exists(ctx, lease)
			return nil
		})
		return pipe.Err[redis.Cmder](err, get, exists)
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("remote: GET %s: %w", key, err)
	}
	b, err := get.Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("remote: GET %s: %w", key, err)
	}
	n, err := exists.Result()
	if err != nil {
		return nil, false, fmt.Errorf("remote: EXISTS %s: %w", lease, err)
	}
	return b, n > 0, nil
}

// MGet returns the values of keys in order, nil where a key holds none, in
// one round trip: MGET on a single node, pipelined GETs where keys may live
// on different nodes (Cluster, Ring), so keys in different hash slots never
// fail with CROSSSLOT.
func (s *Store) MGet(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
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

// setScript writes a value, clears its lease so that a load that started
// before this write cannot overwrite it, and publishes the invalidation.
var setScript = redis.NewScript(`
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
`)

// delScript deletes a value and its lease and publishes the invalidation.
var delScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n
`)

// TTLArg renders ttl as the millisecond argument the scripts take; zero or
// negative means no expiry. A positive ttl under a millisecond rounds up.
func TTLArg(ttl time.Duration) string {
	if ttl <= 0 {
		return "0"
	}
	return strconv.FormatInt(max(int64(ttl/time.Millisecond), 1), 10)
}

// Set writes e, clears its lease and publishes msg on channel (no publish
// when channel is empty), atomically.
func (s *Store) Set(ctx context.Context, e Entry, channel string, msg []byte) error {
	err := s.call(ctx, func(ctx context.Context) error {
		return setScript.Run(ctx, s.rdb, []string{e.Key, e.Lease}, e.Value, TTLArg(e.TTL), channel, msg).Err()
	})
	if err != nil {
		return fmt.Errorf("remote: SET %s: %w", e.Key, err)
	}
	return nil
}

// Delete removes key and its lease and publishes msg on channel (no publish
// when channel is empty), atomically.
func (s *Store) Delete(ctx context.Context, key, lease, channel string, msg []byte) error {
	err := s.call(ctx, func(ctx context.Context) error {
		return delScript.Run(ctx, s.rdb, []string{key, lease}, channel, msg).Err()
	})
	if err != nil {
		return fmt.Errorf("remote: DEL %s: %w", key, err)
	}
	return nil
}

// SetMany writes every entry, clearing their leases, then publishes msgs
// on channel. On a single node that is one pipelined round trip; where keys
// live on several nodes the messages follow in a second one, once every
// write is done, so no process hears of a write before it can read it. It
// is not atomic: on error some entries may have been written, and the
// invalidations may not have been sent.
func (s *Store) SetMany(ctx context.Context, entries []Entry, channel string, msgs [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	err := s.writeThenPublish(ctx, func(ctx context.Context, p redis.Pipeliner) {
		for _, e := range entries {
			// The lease first: a holder's fill landing between the two
			// would otherwise overwrite the new value with its load.
			p.Del(ctx, e.Lease)
			p.Set(ctx, e.Key, e.Value, max(e.TTL, 0))
		}
	}, channel, msgs)
	if err != nil {
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

// Unlink removes key without touching its lease or publishing: it drops a
// value that could not be decoded.
func (s *Store) Unlink(ctx context.Context, key string) error {
	err := s.call(ctx, func(ctx context.Context) error { return s.rdb.Unlink(ctx, key).Err() })
	if err != nil {
		return fmt.Errorf("remote: UNLINK %s: %w", key, err)
	}
	return nil
}
