package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	ilock "github.com/tieredcache/tieredcache/internal/lock"
	"github.com/tieredcache/tieredcache/internal/store"
	"github.com/tieredcache/tieredcache/internal/wire"
)

// Message is one invalidation. On the wire it is JSON of at most 1 MiB,
// 10,000 keys and 4 KiB per key or origin:
//
//	{"origin":"api-7f9c","kind":"invalidate","keys":["app:tenant-global:user:42:v1"]}
//
// Origin identifies the publishing process, which ignores its own
// messages; Kind is "invalidate" (the keys changed: drop any local copy;
// the default when empty) or "fill" (a lease holder just loaded the keys
// into Redis: drop any local copy and wake processes waiting for them),
// and unknown kinds count as "invalidate", since dropping a copy is always
// safe; Keys are full Redis keys.
type Message = wire.Message

// ErrMalformed is wrapped by every DecodeMessage error.
var ErrMalformed = wire.ErrMalformed

// EncodeMessage returns the wire form of m, or an error wrapping
// ErrMalformed when m breaks the limits.
func EncodeMessage(m Message) ([]byte, error) { return wire.Encode(m) }

// DecodeMessage parses and validates the wire form of a message.
func DecodeMessage(data []byte) (Message, error) { return wire.Decode(data) }

// Errors of a Store.
var (
	// ErrMiss is returned by Get when the key holds no value.
	ErrMiss = store.ErrMiss
	// ErrLate is wrapped by the error of a Set that reached Redis after
	// its deadline, and was refused there: its value never lands.
	ErrLate = store.ErrLate
)

// StoreConfig configures a Store. The zero value is usable.
type StoreConfig struct {
	// Timeout bounds each call. Default: 250 milliseconds. go-redis
	// applies it to socket reads only when the client was made with
	// ContextTimeoutEnabled.
	Timeout time.Duration
	// Channel, if set, is where each write publishes a Message naming
	// its key. Default: none.
	Channel string
	// Origin names this process in those messages. Default: random.
	Origin string
}

// Store reads and writes values in Redis. It is safe for concurrent use.
type Store struct {
	s       *store.Store
	channel string
	origin  string
}

// NewStore returns a Store over rdb: a *redis.Client, *redis.ClusterClient
// or failover client.
func NewStore(rdb redis.UniversalClient, cfg StoreConfig) (*Store, error) {
	if cfg.Timeout < 0 {
		return nil, errors.New("remote: Timeout must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 250 * time.Millisecond
	}
	if cfg.Origin == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Origin = "remote-" + hex.EncodeToString(b[:])
	}
	return &Store{s: store.New(rdb, store.Config{Timeout: cfg.Timeout}), channel: cfg.Channel, origin: cfg.Origin}, nil
}

// Get returns the value of key and how long it has left to live (zero
// when it never expires), or ErrMiss.
func (s *Store) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	return s.s.Get(ctx, key)
}

// Set writes value under key for ttl (zero: no expiry), removes the key's
// load lease and publishes the write.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	msg, err := s.message(key)
	if err != nil {
		return err
	}
	return s.s.Set(ctx, store.Entry{Key: key, Lease: ilock.Key(key), Value: value, TTL: ttl}, s.channel, msg)
}

// Delete removes key and its load lease and publishes the delete.
func (s *Store) Delete(ctx context.Context, key string) error {
	msg, err := s.message(key)
	if err != nil {
		return err
	}
	return s.s.Delete(ctx, key, ilock.Key(key), s.channel, msg, false)
}

func (s *Store) message(key string) ([]byte, error) {
	if s.channel == "" {
		return nil, nil
	}
	return wire.Encode(Message{Origin: s.origin, Kind: wire.KindInvalidate, Keys: []string{key}})
}
