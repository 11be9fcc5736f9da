package store

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/guard"
)

// ErrLate is wrapped by the error of a write that reached Redis after its
// deadline and was refused there (see Store.Set).
var ErrLate = errors.New("remote: write reached Redis after its deadline")

// A write that fails on the client (a timeout, a lost connection) may
// still reach Redis later: bytes held by the network arrive after the
// caller was told of the failure, after a replay deleted the key, after a
// newer write. So every write carries a deadline in Redis's own clock; the
// script that puts it in place refuses it once the deadline has passed, and
// a failed write is reported only after its deadline has surely passed in
// Redis. A write that returned an error can then never land over a newer
// one.
//
// serverClock estimates Redis's clock from the writes' replies: a reply
// stamped t by Redis and received at local time r proves that Redis's clock
// minus the local one was at least t-r. Deadlines use the best such bound,
// aged for drift, less a margin. A step of Redis's clock backwards weakens
// the fence by the step.
// Redis Cluster nodes are assumed to agree within that margin (they share
// NTP); see the README.
type serverClock struct {
	base time.Time // origin of the local clock, which is monotonic

	mu     sync.Mutex
	ok     bool
	offset int64 // µs, a lower bound of Redis's clock minus the local one
	at     int64 // local µs when offset was last updated
}

const (
	// clockDrift bounds how fast the two clocks may drift apart, in
	// parts per million (NTP keeps them far closer).
	clockDrift  = 200
	clockMargin = time.Millisecond
)

func newServerClock() *serverClock { return &serverClock{base: time.Now()} }

// now returns the local clock in µs.
func (k *serverClock) now() int64 { return time.Since(k.base).Microseconds() }

// sample records a reply stamped server (µs of Redis's clock) received at
// local time recv. The bound kept is the best of this sample and the
// previous bound, aged by clockDrift: a reply delayed on its way (a busy
// machine) gives a poor bound and must not replace a good one, and the two
// clocks may drift apart slowly.
func (k *serverClock) sample(server, recv int64) {
	lo := server - recv
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.ok {
		k.ok, k.offset, k.at = true, lo, recv
		return
	}
	aged := k.offset - (recv-k.at)*clockDrift/1e6
	k.offset, k.at = max(lo, aged), recv
}

// deadline returns the Redis-clock deadline of a write sent at local time
// sent that its sender gives up on after timeout; ok is false before the
// first sample.
func (k *serverClock) deadline(sent int64, timeout time.Duration) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return sent + (timeout - clockMargin).Microseconds() + k.offset, k.ok
}

// calibrate takes a first sample with TIME.
func (s *Store) calibrate(ctx context.Context) error {
	return s.call(ctx, func(ctx context.Context) error {
		t, err := s.rdb.Time(ctx).Result()
		if err != nil {
			return err
		}
		s.clock.sample(t.UnixMicro(), s.clock.now())
		return nil
	})
}

// fenceDeadline returns the deadline argument of a write about to be sent
// at local time sent: "0" (none) when the Store has no Timeout.
func (s *Store) fenceDeadline(ctx context.Context, sent int64) (int64, error) {
	if s.cfg.Timeout <= 0 {
		return 0, nil
	}
	if d, ok := s.clock.deadline(sent, s.cfg.Timeout); ok {
		return d, nil
	}
	if err := s.calibrate(ctx); err != nil {
		return 0, err
	}
	d, _ := s.clock.deadline(sent, s.cfg.Timeout)
	return d, nil
}

// fenceReply reads a fenced script's reply {applied, seconds, µs}: it
// records the clock sample and reports whether the write was applied.
func (s *Store) fenceReply(c *redis.Cmd) (bool, error) {
	recv := s.clock.now()
	vals, err := c.Slice()
	if err != nil {
		return false, err
	}
	if len(vals) != 3 {
		return false, errors.New("remote: unexpected reply from the write script")
	}
	applied, _ := vals[0].(int64)
	sec, _ := vals[1].(int64)
	usec, _ := vals[2].(int64)
	s.clock.sample(sec*1e6+usec, recv)
	return applied == 1, nil
}

// settle waits, after a write sent at local time sent failed, until its
// deadline has passed in Redis, unless the error proves nothing was sent.
func (s *Store) settle(sent int64, err error) {
	if s.cfg.Timeout <= 0 || !maySend(err) {
		return
	}
	if left := time.Duration(sent+s.cfg.Timeout.Microseconds()-s.clock.now()) * time.Microsecond; left > 0 {
		time.Sleep(left)
	}
}

// maySend reports whether a failed call could still reach Redis: not when
// the guard refused it, the pool had no connection, the dial failed, or
// Redis answered (an error reply: nothing is left in flight).
func maySend(err error) bool {
	var op *net.OpError
	var reply redis.Error
	switch {
	case errors.As(err, &reply):
		return false
	case errors.Is(err, guard.ErrRefused), errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return false
	case errors.As(err, &op) && op.Op == "dial":
		return false
	}
	return true
}
