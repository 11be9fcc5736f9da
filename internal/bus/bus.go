package bus

import (
	"github.com/tieredcache/tieredcache/internal/wire"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler receives what the bus sees. Its methods are called one at a
// time, even when several connections feed the bus (one per master of a
// cluster), and must not block for long: messages queue behind them. They
// must not call Close.
type Handler interface {
	// Up reports that every connection of the bus is confirmed. gap is
	// false the first time; it is true whenever a connection was
	// re-established, added or replaced after the bus had been up, so
	// invalidations may have been lost in between.
	Up(gap bool)
	// Down reports that the stream of invalidations became incomplete: a
	// connection was lost or could not be made. It is called once per
	// outage; Up follows once every connection is back.
	Down(err error)
	// Message delivers a valid message of the app channel from another
	// process. The bus drops its own messages (those Encode made with its
	// Origin) before decoding them.
	Message(m wire.Message)
	// Invalidate reports keys under Config.TrackPrefix that Redis saw
	// modified: by any client (this process included), by expiry or by
	// eviction. keys == nil means that anything may have changed (Redis
	// reports FLUSHALL and FLUSHDB so): the handler must flush.
	Invalidate(keys []string)
	// Malformed reports a message that failed DecodeMessage, or a tracking
	// message of an unexpected shape; it is dropped.
	Malformed(err error)
}

// Config configures a Bus.
type Config struct {
	// Channel is the app-level pub/sub channel. Required.
	Channel string
	// Origin identifies this process in the messages it publishes. Required.
	Origin string
	// TrackPrefix, when not empty, makes the bus ask Redis to report every
	// modification of a key that starts with it, through server-assisted
	// client-side caching (CLIENT TRACKING ON REDIRECT <own id> BCAST PREFIX
	// TrackPrefix, Redis 6 or later), on one connection per master. Where
	// Redis refuses tracking on the bus's first connection (Redis before 6,
	// an ACL without CLIENT, miniredis, a proxy), or the client is neither
	// a *redis.Client nor a *redis.ClusterClient, the bus runs on the
	// Channel alone, as with an empty TrackPrefix. Default: "" (Channel
	// alone).
	TrackPrefix string
	// PingInterval is how long a subscription may stay silent before the
	// bus pings it; a ping unanswered for another interval counts as a lost
	// subscription. On a cluster it is also how often the bus compares the
	// set of masters with its connections. Default: 1s.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between resubscription
	// attempts, which doubles from one to the other, with jitter.
	// Defaults: 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// Handler receives events. Required.
	Handler Handler
}

// Bus owns the subscriptions that carry invalidations and the goroutines
// that read them: one connection per master (one on a single node) when
// Redis tracks keys for it, else one subscription to the app channel.
type Bus struct {
	cfg       Config
	own       string // how this process's messages begin: {"origin":<Origin>,
	rdb       redis.UniversalClient
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	ready     chan struct{}
	fallback  chan struct{} // closed when the first connection finds tracking refused
	fellBack  sync.Once
	startOnce sync.Once
	up        atomic.Bool
	decided   atomic.Int32 // modeUndecided until the first connection decides
	shown     atomic.Int32 // what Mode reports; set by the first confirmation

	// mu serializes handler calls and guards the state they report.
	mu     sync.Mutex
	links  map[*link]struct{}
	everUp bool // Up was reported once
	gap    bool // something happened since that the next Up must report
	outage bool // Down was reported and no Up since
	closed bool
}

const (
	modeUndecided int32 = iota
	modeTracking
	modePubSub
)

// New returns a Bus over rdb, which must stay open until the bus is
// closed; Start starts it. With a TrackPrefix the bus makes its own small
// clients from rdb's options (one per master) and closes them on Close.
func New(rdb redis.UniversalClient, cfg Config) (*Bus, error) {
	switch {
	case cfg.Channel == "":
		return nil, errors.New("remote: bus channel required")
	case cfg.Origin == "":
		return nil, errors.New("remote: bus origin required")
	case cfg.Handler == nil:
		return nil, errors.New("remote: bus handler required")
	case cfg.PingInterval < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("remote: bus intervals must not be negative")
	case cfg.TrackPrefix != "" && cfg.Channel == trackingChannel:
		return nil, fmt.Errorf("remote: bus channel must not be %s", trackingChannel)
	case rdb == nil:
		return nil, errors.New("remote: bus client required")
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
	origin, err := json.Marshal(cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("remote: bus origin: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		cfg: cfg, own: `{"origin":` + string(origin) + `,`, rdb: rdb, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), ready: make(chan struct{}), fallback: make(chan struct{}),
		links: make(map[*link]struct{}),
	}
	if cfg.TrackPrefix == "" || !trackable(rdb) {
		b.decided.Store(modePubSub)
	}
	return b, nil
}

// Start starts the bus. It returns at once; Ready tells when every
// connection is first confirmed. Start after Close does nothing.
func (b *Bus) Start() { b.startOnce.Do(func() { go b.run() }) }

// Ready is closed once every connection of the bus is first confirmed.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// Mode reports how the bus learns of changes once its first subscription
// is confirmed: "tracking" (Redis reports modified keys; the app channel
// rides along) or "pubsub" (the app channel alone); "" before. The mode is
// decided once, by the bus's first connection to answer: if Redis later
// refuses tracking on a new connection (an ACL changed), the bus reports
// Down and keeps retrying in tracking mode rather than silently missing the
// writes of other services.
func (b *Bus) Mode() string {
	switch b.shown.Load() {
	case modeTracking:
		return "tracking"
	case modePubSub:
		return "pubsub"
	}
	return ""
}

// Encode returns the wire form of a message of kind about keys from this
// process.
func (b *Bus) Encode(kind string, keys ...string) ([]byte, error) {
	return wire.Encode(wire.Message{Origin: b.cfg.Origin, Kind: kind, Keys: keys})
}

// EncodeAll returns the wire form of messages of kind about keys from this
// process, split to fit the message limits.
func (b *Bus) EncodeAll(kind string, keys ...string) ([][]byte, error) {
	return wire.EncodeAll(wire.Message{Origin: b.cfg.Origin, Kind: kind, Keys: keys})
}

// Close stops the bus, waits for its goroutines and closes the clients it
// made. It is idempotent. No handler call starts once Close has begun.
func (b *Bus) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.startOnce.Do(func() { close(b.done) }) // never started
	<-b.done
	return nil
}

func (b *Bus) stopped() bool { return b.ctx.Err() != nil }

// run is the bus's supervisor: it runs tracking links while the mode allows
// and pub/sub otherwise, until the bus is closed.
func (b *Bus) run() {
	defer close(b.done)
	if b.decided.Load() != modePubSub {
		b.runTracking()
	}
	if !b.stopped() {
		b.runPubSub()
	}
}

// runPubSub subscribes to the app channel through the user's client, as
// the bus always did, until the bus is closed.
func (b *Bus) runPubSub() {
	l := b.newLink(nil, false, b.rdb.Subscribe, b.cfg.Channel)
	b.startLink(l)
	<-b.ctx.Done()
	b.stopLinks(l)
}

// startLink registers l and starts its goroutine. A link added after the
// bus was up is a gap: what it should have seen before is lost.
func (b *Bus) startLink(l *link) {
	b.mu.Lock()
	b.links[l] = struct{}{}
	if b.everUp {
		b.gap = true
	}
	b.mu.Unlock()
	go l.run()
}

// stopLinks stops links without reporting anything.
func (b *Bus) stopLinks(ls ...*link) {
	b.mu.Lock()
	for _, l := range ls {
		delete(b.links, l)
		l.removed = true
	}
	b.mu.Unlock()
	for _, l := range ls {
		l.stop()
	}
}

// linkUp records a confirmed subscription of l. newConn says it is the
// first confirmation on a new connection, which is a gap if l had been up.
func (b *Bus) linkUp(l *link, newConn bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.removed || b.closed {
		return
	}
	if newConn && l.everUp {
		b.gap = true
	}
	l.confirmed, l.everUp = true, true
	mode := modePubSub
	if l.track {
		mode = modeTracking
	}
	b.shown.CompareAndSwap(modeUndecided, mode)
	b.settle()
}

// linkLost records that l lost its subscription, or could not make one.
func (b *Bus) linkLost(l *link, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.removed || b.closed {
		return
	}
	l.confirmed = false
	b.down(err)
}

// down reports Down once per outage. b.mu is held.
func (b *Bus) down(err error) {
	if b.outage || b.closed {
		return
	}
	b.outage = true
	b.up.Store(false)
	b.cfg.Handler.Down(err)
}

// settle reports Up when every connection is confirmed and the bus was not
// up, or was but has a gap to report. b.mu is held.
func (b *Bus) settle() {
	if b.closed || len(b.links) == 0 || (b.up.Load() && !b.gap) {
		return
	}
	for l := range b.links {
		if !l.confirmed {
			return
		}
	}
	gap := b.everUp
	b.everUp, b.gap, b.outage = true, false, false
	b.up.Store(true)
	b.cfg.Handler.Up(gap)
	select {
	case <-b.ready:
	default:
		close(b.ready)
	}
}

// deliver hands a pub/sub message of l to the handler.
func (b *Bus) deliver(l *link, m *redis.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	switch {
	case m.Channel == b.cfg.Channel:
		if strings.HasPrefix(m.Payload, b.own) {
			return // this process's own: applied when it was written
		}
		msg, err := wire.Decode([]byte(m.Payload))
		if err != nil {
			b.cfg.Handler.Malformed(err)
			return
		}
		b.cfg.Handler.Message(msg)
	case l.track && m.Channel == trackingChannel:
		b.invalidate(m)
	}
}

// link is one subscription of the bus and the goroutine that keeps it:
// subscribing, confirming, reading, pinging, and resubscribing with backoff.
type link struct {
	b        *Bus
	client   *redis.Client // made by the bus for this link; nil for the user's
	track    bool          // the connection tracks keys (tracking mode)
	channels []string
	open     opener
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}

	follow bool         // check that the link's server is the user's (single node)
	server atomic.Value // string: run id of the server of the link's last connection, if follow

	mu      sync.Mutex
	ps      *redis.PubSub
	unwatch func() bool // stops closing the last dialed connection when l stops

	// Guarded by b.mu.
	confirmed bool // the current connection is confirmed
	everUp    bool // some connection of this link was confirmed
	removed   bool // the bus no longer counts this link
}

// opener starts a subscription; Client.Subscribe is one.
type opener func(ctx context.Context, channels ...string) *redis.PubSub

// newLink returns a link of b on channels, which open subscribes to.
func (b *Bus) newLink(client *redis.Client, track bool, open opener, channels ...string) *link {
	ctx, cancel := context.WithCancel(b.ctx)
	return &link{
		b: b, client: client, track: track, channels: channels, open: open,
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// stop ends l's goroutine, waits for it and closes the client made for it.
func (l *link) stop() {
	l.cancel()
	l.mu.Lock()
	if l.ps != nil {
		_ = l.ps.Close()
	}
	l.mu.Unlock()
	<-l.done
	if l.client != nil {
		_ = l.client.Close()
	}
}

func (l *link) run() {
	defer close(l.done)
	cfg := l.b.cfg
	backoff := cfg.MinBackoff
	for l.ctx.Err() == nil {
		wasUp, err := l.attempt()
		if l.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errFallback) {
			l.b.requestFallback()
			return
		}
		l.b.linkLost(l, err)
		if wasUp {
			backoff = cfg.MinBackoff
		}
		if !l.sleep(jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

// attempt subscribes and reads the subscription until it fails. It reports
// whether the subscription was confirmed.
func (l *link) attempt() (bool, error) {
	ps, err := l.subscribe()
	if err != nil {
		return false, err
	}
	l.mu.Lock()
	if l.ctx.Err() != nil {
		l.mu.Unlock()
		_ = ps.Close()
		return false, l.ctx.Err()
	}
	l.ps = ps
	l.mu.Unlock()

	wasUp, err := l.session(ps)
	l.mu.Lock()
	l.ps = nil
	l.mu.Unlock()
	_ = ps.Close()
	return wasUp, err
}

// subscribe starts a subscription. The connection's handshake is bounded
// by the confirmation wait, so a hung server cannot hold Close; a client
// that panics (a Ring with every shard down does) is reported as an error.
func (l *link) subscribe() (ps *redis.PubSub, err error) {
	defer func() {
		if r := recover(); r != nil {
			ps, err = nil, fmt.Errorf("remote: subscribe %v: %v", l.channels, r)
		}
	}()
	ctx, cancel := context.WithTimeout(l.ctx, 2*l.b.cfg.PingInterval)
	defer cancel()
	ps = l.open(ctx)
	if err := ps.Subscribe(ctx, l.channels...); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("remote: subscribe %v: %w", l.channels, err)
	}
	return ps, nil
}

// session confirms the subscription on ps and reads it until it fails. It
// reports whether the subscription was confirmed.
//
// A pinger pings the subscription whenever it was silent for PingInterval,
// so a read that gets nothing, not even a pong, for two intervals means a
// dead or hung connection, which ends the session. Reads never time out on
// a healthy connection: a read timeout in the middle of a reply would
// leave go-redis reading the rest of it as replies of their own.
func (l *link) session(ps *redis.PubSub) (bool, error) {
	wait := 2 * l.b.cfg.PingInterval
	ctx, cancel := context.WithTimeout(l.ctx, wait)
	msg, err := receive(ctx, ps, wait)
	cancel()
	if err != nil {
		return false, fmt.Errorf("remote: subscribe %v: %w", l.channels, err)
	}
	if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != "subscribe" {
		return false, fmt.Errorf("remote: subscribe %v: unexpected reply %v", l.channels, msg)
	}
	l.b.linkUp(l, true)

	var heard atomic.Int64 // when the last reply arrived, in UnixNano
	heard.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go l.pinger(ps, &heard, stop, pinged)
	defer func() { close(stop); <-pinged }()
	for {
		msg, err := receive(l.ctx, ps, wait)
		if err != nil {
			if isTimeout(err) {
				return true, fmt.Errorf("remote: subscription silent for %v: %w", wait, err)
			}
			return true, fmt.Errorf("remote: subscription: %w", err)
		}
		heard.Store(time.Now().UnixNano())
		l.handle(msg)
	}
}

// pinger pings ps whenever nothing was heard on it for PingInterval, until
// stop is closed; then it closes done. A failed ping needs no handling
// here: the read it was meant to wake fails too.
func (l *link) pinger(ps *redis.PubSub, heard *atomic.Int64, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	interval := l.b.cfg.PingInterval
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if last := time.Unix(0, heard.Load()); now.Sub(last) < interval {
				t.Reset(last.Add(interval).Sub(now))
				continue
			}
			_ = ps.Ping(l.ctx)
			heard.Store(now.UnixNano()) // one ping per silent interval
			t.Reset(interval)
		}
	}
}

// handle passes on what the subscription received.
func (l *link) handle(msg any) {
	switch m := msg.(type) {
	case *redis.Message:
		l.b.deliver(l, m)
	case *redis.Subscription:
		// go-redis reconnects and resubscribes on its own after some
		// errors; whatever was sent in between is lost. A new connection
		// counts its channels from one again.
		if m.Kind == "subscribe" {
			l.b.linkUp(l, m.Count == 1)
		}
	case *redis.Pong:
		// The bus pings without a payload, which Redis answers with
		// ["pong", ""]; any other string is no reply Redis sends here.
		if m.Payload != "" {
			l.b.unreadable(l, fmt.Errorf("%w: unexpected reply %q", wire.ErrMalformed, m.Payload))
		}
	case nullPayload:
		if l.track {
			l.b.flushAll()
		}
	case unreadable:
		l.b.unreadable(l, m.err)
	}
}

func (l *link) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
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
