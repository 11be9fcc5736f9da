package tiered

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tieredcache/tieredcache/keys"
)

// tier says where a read was served from.
type tier uint8

const (
	tierNone tier = iota // a miss, a load, or a write
	tierL1
	tierL2
)

type requestIDKey struct{}

// withRequestID returns a copy of ctx carrying a request id, which the
// debug log line of each cache operation includes as request_id.
func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// requestIDFrom returns the request id set by withRequestID.
func requestIDFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(requestIDKey{}).(string)
	return id, ok
}

// logOp writes the debug line of one operation, with the fields of the
// Python template's structured log: operation, resource_type, cache_hit,
// duration_ms, request_id and org_id. Callers check Enabled first, so
// nothing here runs when debug logging is off.
func (c *Cache[V]) logOp(ctx context.Context, op string, t tier, start time.Time, err error, opts []Option) {
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs,
		slog.String("operation", op),
		slog.String("resource_type", c.resource),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	)
	if op == "cache_get" || op == "cache_fetch" {
		attrs = append(attrs, slog.Bool("cache_hit", t != tierNone))
		if t == tierL1 {
			attrs = append(attrs, slog.String("tier", "l1"))
		} else if t == tierL2 {
			attrs = append(attrs, slog.String("tier", "l2"))
		}
	}
	if id, ok := c.c.opts.RequestID(ctx); ok {
		attrs = append(attrs, slog.String("request_id", id))
	}
	if org, ok := orgID(ctx, opts); ok {
		attrs = append(attrs, slog.String("org_id", org))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.c.opts.Logger.LogAttrs(ctx, slog.LevelDebug, op, attrs...)
}

// orgID is the tenant of a call: an explicit Tenant option, else the
// context's.
func orgID(ctx context.Context, opts []Option) (string, bool) {
	for i := len(opts) - 1; i >= 0; i-- {
		if opts[i].kind == optTenant {
			return opts[i].s, true
		}
	}
	return keys.TenantFrom(ctx)
}

// rateLimit lets one log line through per interval and counts the lines
// it held back, so a flood of bad input (hostile bus traffic, a neighbour
// writing values this cache cannot decode) costs counters, not a log line
// each. The counters that go with those lines keep counting every event.
type rateLimit struct {
	next       atomic.Int64 // unix nanoseconds before which lines are held
	suppressed atomic.Uint64
}

const logInterval = time.Second

// allow reports whether a line may be logged now and, if so, how many were
// held back since the last one.
func (r *rateLimit) allow() (bool, uint64) {
	now := time.Now().UnixNano()
	next := r.next.Load()
	if now < next || !r.next.CompareAndSwap(next, now+int64(logInterval)) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}

// warn logs msg at warn level through r.
func (r *rateLimit) warn(l *slog.Logger, msg string, args ...any) {
	if ok, n := r.allow(); ok {
		if n > 0 {
			args = append(args, "suppressed_since_last", n)
		}
		l.Warn(msg, args...)
	}
}
