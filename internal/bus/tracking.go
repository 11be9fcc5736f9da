package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// How a tracking connection is set up.
//
// Each connection that carries tracking is a pub/sub connection of a small
// client the bus makes from the options of the user's client (for a
// cluster, of the client of one master). Its OnConnect hook, which go-redis
// runs on every new connection, pub/sub ones included, before it
// resubscribes, asks for the connection's id and then turns tracking on
// with the connection itself as the redirect target:
//
//	CLIENT ID
//	CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX <TrackPrefix>
//
// after which the connection subscribes to __redis__:invalidate, where
// Redis 6+ sends RESP2 tracking clients their invalidations. One connection
// both tracks and receives, so losing it is one gap, and a connection that
// go-redis re-establishes on its own is tracked again before it
// resubscribes.

// errFallback is returned by the OnConnect hook once the bus has decided,
// on its first connection, that Redis refuses tracking.
var errFallback = errors.New("remote: Redis refuses client tracking; using the pub/sub channel alone")

// trackable reports whether the bus can make tracking clients from rdb's
// options. A Ring is not supported, nor a client implemented elsewhere.
func trackable(rdb redis.UniversalClient) bool {
	switch rdb.(type) {
	case *redis.Client, *redis.ClusterClient:
		return true
	}
	return false
}

// trackingClient returns a client of the node that opt reaches (the master
// of a Sentinel failover client, whose Dialer asks the Sentinels), for the
// subscriptions of l alone: RESP2, so invalidations come as pub/sub
// messages; a pool of one that dials nothing ahead (the bus never uses it,
// and an idle connection would be tracked and never read); no client-side
// cache, auto-pipelining, limiter or maintenance notifications of go-redis;
// context deadlines bound socket I/O; and its connections close when l
// stops, so Close is prompt even while a handshake hangs. Any OnConnect
// the user set runs first.
func (b *Bus) trackingClient(opt *redis.Options, l *link) *redis.Client {
	o := *opt
	o.Protocol = 2
	o.ContextTimeoutEnabled = true
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 1, 0
	o.AutoPipelineOptions = nil
	o.Limiter = nil
	o.PushNotificationProcessor = nil
	o.ClientSideCacheConfig, o.ClientSideCache = nil, nil
	o.ClientSideCacheRefreshOnInvalidate, o.ClientSideCacheCoalesceMisses = false, false
	o.ClientSideCacheInvalidationBatchWindow = 0
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.Dialer = l.closingDialer(opt)
	user := opt.OnConnect
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if user != nil {
			if err := user(ctx, cn); err != nil {
				return err
			}
		}
		if err := b.arm(ctx, cn); err != nil {
			return err
		}
		if l.follow {
			l.server.Store(serverID(ctx, cn))
		}
		return nil
	}
	return redis.NewClient(&o)
}

// closingDialer returns opt's dialer, with every connection it makes closed
// when l stops.
func (l *link) closingDialer(opt *redis.Options) func(context.Context, string, string) (net.Conn, error) {
	dial := opt.Dialer
	if dial == nil {
		dial = redis.NewDialer(opt)
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.unwatch != nil {
			l.unwatch() // the previous connection is gone
		}
		l.unwatch = context.AfterFunc(l.ctx, func() { _ = conn.Close() })
		return conn, nil
	}
}

// serverID returns the run id of the server cn is connected to, or "" if
// it cannot tell (INFO denied, an error).
func serverID(ctx context.Context, cn *redis.Conn) string {
	info, err := cn.Info(ctx, "server").Result()
	if err != nil {
		return ""
	}
	return RunID(info)
}

// RunID finds the run_id field of an INFO reply: "" when there is none.
func RunID(info string) string {
	for line := range strings.Lines(info) {
		if id, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(id)
		}
	}
	return ""
}

// arm turns tracking on for the connection cn, redirected to itself. The
// first connection to get an answer decides the bus's mode: a refusal then
// means pub/sub for good (errFallback), a refusal later is an error the
// link reports as Down and retries.
func (b *Bus) arm(ctx context.Context, cn *redis.Conn) error {
	if b.decided.Load() == modePubSub {
		return errFallback
	}
	id, err := cn.ClientID(ctx).Result()
	if err == nil && id <= 0 {
		err = fmt.Errorf("remote: CLIENT ID returned %d", id)
	}
	if err == nil {
		err = cn.ClientTrackingOn(ctx, &redis.ClientTrackingOptions{
			Redirect: id, Bcast: true, Prefixes: []string{b.cfg.TrackPrefix},
		}).Err()
	}
	switch {
	case err == nil:
		if b.decide(modeTracking) != modeTracking {
			return errFallback
		}
		return nil
	case !refused(err):
		return fmt.Errorf("remote: enable tracking: %w", err)
	case b.decide(modePubSub) == modePubSub:
		return fmt.Errorf("%w: %w", errFallback, err)
	default:
		return fmt.Errorf("remote: Redis refused tracking it accepted before: %w", err)
	}
}

// requestFallback tells the supervisor to give up tracking for pub/sub.
func (b *Bus) requestFallback() {
	b.fellBack.Do(func() { close(b.fallback) })
}

// decide records the bus's mode unless it is decided already, and returns
// the mode decided.
func (b *Bus) decide(mode int32) int32 {
	b.decided.CompareAndSwap(modeUndecided, mode)
	return b.decided.Load()
}

// refused reports whether err is Redis declining the command for good: an
// unknown command or subcommand, a syntax error, an ACL denial. Transient
// replies (LOADING, BUSY, MASTERDOWN, TRYAGAIN, a full server) are not.
func refused(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	switch {
	case strings.HasPrefix(msg, "NOPERM"):
		return true
	case strings.HasPrefix(msg, "ERR max number of clients"):
		return false
	}
	return strings.HasPrefix(msg, "ERR")
}
