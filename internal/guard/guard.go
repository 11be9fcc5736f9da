// Package guard runs Redis calls under a timeout and a circuit breaker.
package guard

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrRefused is wrapped, beside the guard's own error, by the error of a
// call the guard refused: nothing was sent.
var ErrRefused = errors.New("call refused by the circuit breaker")

// Guard admits or refuses calls: a circuit breaker. Allow returns an error
// to refuse a call; otherwise the caller reports the call's error (nil on
// success) to done. gobreaker's TwoStepCircuitBreaker satisfies it.
type Guard interface {
	Allow() (done func(err error), err error)
}

// Run runs f with ctx bounded by timeout (if positive), admitted by g (if
// not nil), and reports the outcome to g. A call abandoned because ctx
// ended is reported as context.Canceled: the caller's leaving says nothing
// about Redis.
func Run(ctx context.Context, g Guard, timeout time.Duration, f func(ctx context.Context) error) error {
	var done func(error)
	if g != nil {
		d, err := g.Allow()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		done = d
	}
	bctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		bctx, cancel = context.WithTimeout(ctx, timeout)
	}
	err := f(bctx)
	cancel()
	if done != nil {
		if err != nil && ctx.Err() != nil {
			done(context.Canceled)
		} else {
			done(err)
		}
	}
	return err
}
