package tiered

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// BreakerOptions tunes the circuit breaker in front of Redis. While it is
// open, calls that would go to Redis fail at once, so callers pay the
// loader's latency instead of Redis's timeouts.
type BreakerOptions struct {
	// Failures is how many consecutive failed Redis calls open the breaker.
	// Default: 5.
	Failures uint32
	// Cooldown is how long the breaker stays open before it lets one call
	// through to test Redis. Default: 1 second.
	Cooldown time.Duration
	// Disabled turns the breaker off: every call goes to Redis.
	Disabled bool
}

const (
	defaultBreakerFailures = 5
	defaultBreakerCooldown = time.Second
)

// newBreaker returns the breaker of a Client, or nil when disabled.
func newBreaker(c *Client, o BreakerOptions) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	if o.Disabled {
		return nil
	}
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     o.Cooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= o.Failures
		},
		IsSuccessful: func(err error) bool { return !isOutage(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				c.counters.breakerOpened.inc()
				c.opts.Logger.Warn("tiered: Redis circuit breaker open; serving from loaders",
					"cooldown", o.Cooldown.String())
			} else if from != gobreaker.StateClosed && to == gobreaker.StateClosed {
				c.opts.Logger.Info("tiered: Redis circuit breaker closed")
			}
		},
	})
}

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
func isBreakerRefusal(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}
