package lock

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	ilock "github.com/tieredcache/tieredcache/internal/lock"
)

// Errors of Acquire and Fill.
var (
	// ErrHeld is returned by Acquire when another process holds the lease.
	ErrHeld = ilock.ErrHeld
	// ErrLost is returned by Fill when the lease no longer holds: a write
	// or delete of the key, or expiry, came first. The value must not be
	// cached anywhere.
	ErrLost = ilock.ErrLost
	// ErrExists is returned by Fill when another writer, one that takes no
	// lease, wrote the key meanwhile; the fill leaves its value in place.
	ErrExists = ilock.ErrExists
)

// Leaser obtains leases. It is safe for concurrent use.
type Leaser struct{ l *ilock.Leaser }

// New returns a Leaser over rdb (a *redis.Client, *redis.ClusterClient or
// failover client) whose leases last ttl unless filled or released: longer
// than a load takes. The callers' contexts bound each call.
func New(rdb redis.UniversalClient, ttl time.Duration) (*Leaser, error) {
	l, err := ilock.New(rdb, ilock.Config{TTL: ttl})
	if err != nil {
		return nil, err
	}
	return &Leaser{l: l}, nil
}

// Acquire obtains the lease on key (the value's key; the lease lives
// beside it, in the same Redis Cluster slot). It returns ErrHeld if another
// process holds it, another error if Redis could not answer.
func (l *Leaser) Acquire(ctx context.Context, key string) (*Lease, error) {
	le, err := l.l.Acquire(ctx, key)
	if err != nil {
		return nil, err
	}
	return &Lease{le: le}, nil
}

// Lease is an obtained lease.
type Lease struct{ le *ilock.Lease }

// Fill stores value under the lease's key for ttl (zero: no expiry) if
// the lease still holds and the key is still absent, and frees the lease,
// in one round trip. It returns ErrLost or ErrExists when it stored
// nothing, another error when Redis failed.
func (le *Lease) Fill(ctx context.Context, value []byte, ttl time.Duration) error {
	return le.le.Fill(ctx, value, ttl, false, "", nil)
}

// Release frees the lease without filling, for a load that failed, so
// that another process may load at once.
func (le *Lease) Release(ctx context.Context) error { return le.le.Release(ctx) }
