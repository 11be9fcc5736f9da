package tiered

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

const (
	defaultBreakerFailures = 5
	defaultBreakerCooldown = time.Second
)

// newBreaker returns the breaker of a Client, or nil when disabled.
func newBreaker(c *Client, o Options) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	if o.BreakerDisabled {
		return nil
	}
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "redis",
		MaxRequests: 1,
		Timeout:     o.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= o.BreakerFailures
		},
		IsSuccessful: func(err error) bool { return !isOutage(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				c.counters.breakerOpened.inc()
				c.opts.Logger.Warn("tiered: Redis circuit breaker open; serving from loaders",
					"cooldown", o.BreakerCooldown.String())
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
