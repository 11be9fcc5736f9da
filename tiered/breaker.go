package tiered

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	defaultBreakerFailures = 1
	defaultBreakerCooldown = 500 * time.Millisecond
)

// errBreakerOpen is the breaker refusing a call.
var errBreakerOpen = errors.New("circuit breaker open")

// breaker stands in front of every Redis call. After Failures consecutive
// calls fail for want of Redis, it opens: calls fail at once, so callers
// pay their loaders' latency, never Redis's timeouts. Callers never test
// whether Redis is back; a probe does, in the background, every Cooldown,
// and closes the breaker on its first answer.
type breaker struct {
	c        *Client
	failures uint32
	cooldown time.Duration
	open     atomic.Bool
	failed   atomic.Uint32 // consecutive failures while closed
	doneFn   func(error)   // done, bound once: Allow does not allocate
}

// newBreaker returns the breaker of a Client, or nil when disabled.
func newBreaker(c *Client, o Options) *breaker {
	if o.BreakerDisabled {
		return nil
	}
	b := &breaker{c: c, failures: o.BreakerFailures, cooldown: o.BreakerCooldown}
	b.doneFn = b.done
	return b
}

// Allow admits a call, or refuses it while the breaker is open.
func (b *breaker) Allow() (func(error), error) {
	if b.open.Load() {
		return nil, errBreakerOpen
	}
	return b.doneFn, nil
}

// done hears how an admitted call went.
func (b *breaker) done(err error) {
	switch {
	case errors.Is(err, context.Canceled):
		// the caller gave up: says nothing of Redis
	case !isOutage(err):
		b.failed.Store(0)
	case b.failed.Add(1) >= b.failures:
		b.trip()
	}
}

// trip opens the breaker and starts the probe, once.
func (b *breaker) trip() {
	if b.open.Swap(true) {
		return
	}
	if !b.c.enter() {
		return // closing: nothing to probe for
	}
	b.c.counters.breakerOpened.inc()
	b.c.opts.Logger.Warn("tiered: Redis circuit breaker open; serving from loaders until Redis answers again",
		"probe_every", b.cooldown.String())
	go b.probe()
}

// probe pings Redis every cooldown until it answers, then closes the
// breaker. It stops when the Client closes.
func (b *breaker) probe() {
	defer b.c.leave()
	t := time.NewTicker(b.cooldown)
	defer t.Stop()
	for {
		select {
		case <-b.c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(b.c.ctx, b.c.opts.OpTimeout)
		err := b.c.opts.Redis.Ping(ctx).Err()
		cancel()
		if err == nil {
			b.failed.Store(0)
			b.open.Store(false)
			b.c.opts.Logger.Info("tiered: Redis circuit breaker closed: Redis answers again")
			return
		}
	}
}

// isOpen reports whether the breaker refuses calls.
func (b *breaker) isOpen() bool { return b != nil && b.open.Load() }

// isOutage reports whether err from a Redis call means Redis is not
// usable, as opposed to an answer (a miss, a script's refusal, an error
// reply about the command).
func isOutage(err error) bool {
	if err == nil {
		return false
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		// The server answered. Only replies that mean "not now" count.
		msg := reply.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "BUSY "} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// isBreakerRefusal reports whether err is the breaker refusing a call.
func isBreakerRefusal(err error) bool { return errors.Is(err, errBreakerOpen) }
