package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Subscriber is the part of go-redis a Bus needs; redis.UniversalClient
// satisfies it.
type Subscriber interface {
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// BusHandler receives what the bus sees. Its methods are called from the
// bus goroutine, one at a time, and must not block for long: messages queue
// behind them.
type BusHandler interface {
	// Up reports a confirmed subscription. gap is true when an earlier
	// subscription existed, so messages may have been lost in between.
	Up(gap bool)
	// Down reports that the subscription was lost or could not be made.
	Down(err error)
	// Message delivers a valid message, including this process's own.
	Message(m Message)
	// Malformed reports a message that failed DecodeMessage; it is dropped.
	Malformed(err error)
}

// BusConfig configures a Bus.
type BusConfig struct {
	// Channel is the pub/sub channel. Required.
	Channel string
	// Origin identifies this process in the messages it publishes. Required.
	Origin string
	// PingInterval is how long the subscription may stay silent before the
	// bus pings it; a ping unanswered for another interval counts as a lost
	// subscription. Default: 1s.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between resubscription
	// attempts, which doubles from one to the other, with jitter.
	// Defaults: 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// Handler receives events. Required.
	Handler BusHandler
}

// Bus owns one subscription to the invalidation channel and the goroutine
// that reads it.
type Bus struct {
	cfg    BusConfig
	rdb    Subscriber
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{}
	up     atomic.Bool

	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
}

// NewBus returns a Bus; Start starts it.
func NewBus(rdb Subscriber, cfg BusConfig) (*Bus, error) {
	switch {
	case cfg.Channel == "":
		return nil, errors.New("remote: bus channel required")
	case cfg.Origin == "":
		return nil, errors.New("remote: bus origin required")
	case cfg.Handler == nil:
		return nil, errors.New("remote: bus handler required")
	case cfg.PingInterval < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("remote: bus intervals must not be negative")
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	ctx, cancel := context.WithCancel(context.Background())
	return &Bus{
		cfg: cfg, rdb: rdb, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), ready: make(chan struct{}),
	}, nil
}

// Start starts the bus goroutine. It returns at once; Ready tells when the
// first subscription is confirmed.
func (b *Bus) Start() { go b.run() }

// Ready is closed once the first subscription is confirmed.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// Up reports whether the subscription is currently confirmed.
func (b *Bus) Up() bool { return b.up.Load() }

// Encode returns the wire form of a message of kind about keys from this
// process.
func (b *Bus) Encode(kind string, keys ...string) ([]byte, error) {
	return EncodeMessage(Message{Origin: b.cfg.Origin, Kind: kind, Keys: keys})
}

// EncodeAll returns the wire form of messages of kind about keys from this
// process, split to fit the message limits.
func (b *Bus) EncodeAll(kind string, keys ...string) ([][]byte, error) {
	return EncodeMessages(Message{Origin: b.cfg.Origin, Kind: kind, Keys: keys})
}

// Close stops the bus and waits for its goroutine. It is idempotent.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closed = true
	ps := b.ps
	b.mu.Unlock()
	b.cancel()
	if ps != nil {
		_ = ps.Close()
	}
	<-b.done
	return nil
}

func (b *Bus) stopped() bool { return b.ctx.Err() != nil }

func (b *Bus) run() {
	defer close(b.done)
	everUp := false
	backoff := b.cfg.MinBackoff
	for !b.stopped() {
		ps, err := b.subscribe()
		if err != nil {
			if b.up.Swap(false) || !everUp {
				b.cfg.Handler.Down(err)
			}
			if !b.sleep(jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, b.cfg.MaxBackoff)
			continue
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = ps.Close()
			return
		}
		b.ps = ps
		b.mu.Unlock()

		wasUp, err := b.session(ps, &everUp)
		b.mu.Lock()
		b.ps = nil
		b.mu.Unlock()
		_ = ps.Close()
		if b.stopped() {
			return
		}
		if b.up.Swap(false) || !everUp {
			b.cfg.Handler.Down(err)
		}
		if wasUp {
			backoff = b.cfg.MinBackoff
		}
		if !b.sleep(jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, b.cfg.MaxBackoff)
	}
}

// subscribe starts a subscription. The connection's handshake is bounded
// by the confirmation wait, so a hung server cannot hold Close; a client
// that panics (a Ring with every shard down does) is reported as an error.
func (b *Bus) subscribe() (ps *redis.PubSub, err error) {
	defer func() {
		if r := recover(); r != nil {
			ps, err = nil, fmt.Errorf("remote: subscribe %s: %v", b.cfg.Channel, r)
		}
	}()
	ctx, cancel := context.WithTimeout(b.ctx, 2*b.cfg.PingInterval)
	defer cancel()
	return b.rdb.Subscribe(ctx, b.cfg.Channel), nil
}

// session confirms the subscription on ps and reads it until it fails. It
// reports whether the subscription was confirmed.
func (b *Bus) session(ps *redis.PubSub, everUp *bool) (bool, error) {
	wait := 2 * b.cfg.PingInterval
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	msg, err := ps.ReceiveTimeout(ctx, wait)
	cancel()
	if err != nil {
		return false, fmt.Errorf("remote: subscribe %s: %w", b.cfg.Channel, err)
	}
	if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != "subscribe" {
		return false, fmt.Errorf("remote: subscribe %s: unexpected reply %v", b.cfg.Channel, msg)
	}
	b.markUp(*everUp)
	*everUp = true

	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(b.ctx, b.cfg.PingInterval)
		if err != nil {
			if !b.stopped() && isTimeout(err) && !pinged {
				if err := ps.Ping(b.ctx); err != nil {
					return true, fmt.Errorf("remote: ping subscription: %w", err)
				}
				pinged = true
				continue
			}
			if isTimeout(err) {
				return true, fmt.Errorf("remote: subscription silent for %v: %w", 2*b.cfg.PingInterval, err)
			}
			return true, fmt.Errorf("remote: subscription: %w", err)
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			b.dispatch(m.Payload)
		case *redis.Subscription:
			// go-redis reconnects and resubscribes on its own after some
			// errors; whatever was published in between is lost.
			if m.Kind == "subscribe" {
				b.markUp(true)
			}
		}
	}
}

func (b *Bus) markUp(gap bool) {
	b.up.Store(true)
	b.cfg.Handler.Up(gap)
	select {
	case <-b.ready:
	default:
		close(b.ready)
	}
}

func (b *Bus) dispatch(payload string) {
	m, err := DecodeMessage([]byte(payload))
	if err != nil {
		b.cfg.Handler.Malformed(err)
		return
	}
	b.cfg.Handler.Message(m)
}

func (b *Bus) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
