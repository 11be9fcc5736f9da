package bus_test

import (
	"github.com/tieredcache/tieredcache/internal/wire"

	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/internal/bus"
	"github.com/tieredcache/tieredcache/internal/redistest"
)

// recorder is a Handler that records events and lets tests wait for them.
type recorder struct {
	mu           sync.Mutex
	ups, gaps    int
	downs        int
	lastDown     error
	msgs         []wire.Message
	malformed    []error
	invalidated  map[string]int // times each key was reported
	flushes      int            // Invalidate(nil) calls
	calls        []string       // "up", "gap", "down", "msg", "inv", "flush", "malformed", in order
	inHandler    bool           // a handler call is running: to catch overlapping calls
	overlaps     int
	onInvalidate func(keys []string, at time.Time)
	changed      chan struct{}
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}, 1), invalidated: make(map[string]int)}
}

// enter and leave bracket every handler call, to check they never overlap.
func (r *recorder) enter(call string) {
	r.mu.Lock()
	if r.inHandler {
		r.overlaps++
	}
	r.inHandler = true
	r.calls = append(r.calls, call)
	r.mu.Unlock()
}

func (r *recorder) leave() {
	r.mu.Lock()
	r.inHandler = false
	r.mu.Unlock()
	r.note()
}

func (r *recorder) note() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) Up(gap bool) {
	call := "up"
	if gap {
		call = "gap"
	}
	r.enter(call)
	defer r.leave()
	r.mu.Lock()
	r.ups++
	if gap {
		r.gaps++
	}
	r.mu.Unlock()
}

func (r *recorder) Down(err error) {
	r.enter("down")
	defer r.leave()
	r.mu.Lock()
	r.downs++
	r.lastDown = err
	r.mu.Unlock()
}

func (r *recorder) Message(m wire.Message) {
	r.enter("msg")
	defer r.leave()
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) Invalidate(keys []string) {
	at := time.Now()
	call := "inv"
	if keys == nil {
		call = "flush"
	}
	r.enter(call)
	defer r.leave()
	r.mu.Lock()
	hook := r.onInvalidate
	if keys == nil {
		r.flushes++
	}
	for _, k := range keys {
		r.invalidated[k]++
	}
	r.mu.Unlock()
	if hook != nil {
		hook(keys, at)
	}
}

func (r *recorder) Malformed(err error) {
	r.enter("malformed")
	defer r.leave()
	r.mu.Lock()
	r.malformed = append(r.malformed, err)
	r.mu.Unlock()
}

// await waits until cond holds, re-checking after every event.
func (r *recorder) await(t *testing.T, what string, cond func(r *recorder) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-timeout:
			r.mu.Lock()
			calls := r.calls
			r.mu.Unlock()
			t.Fatalf("timed out waiting for %s; handler calls: %v", what, calls)
		}
	}
}

// startBusOn starts a bus over rdb with cfg, filling in the origin, a
// recorder as handler and short backoffs.
func startBusOn(t *testing.T, rdb redis.UniversalClient, cfg bus.Config) (*bus.Bus, *recorder) {
	t.Helper()
	rec := newRecorder()
	cfg.Origin, cfg.Handler = "self", rec
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	bus, err := bus.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bus.Start()
	t.Cleanup(func() {
		_ = bus.Close()
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.overlaps != 0 {
			t.Errorf("%d handler calls overlapped another", rec.overlaps)
		}
	})
	return bus, rec
}

// awaitReady waits for the bus's first confirmation.
func awaitReady(t *testing.T, bus *bus.Bus) {
	t.Helper()
	select {
	case <-bus.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("bus not ready")
	}
}

// modes are the two ways a bus runs against a real Redis: the app channel
// alone, and tracking with the app channel riding along.
var modes = []struct{ name, prefix, want string }{
	{"pubsub", "", "pubsub"},
	{"tracking", "tracked:", "tracking"},
}

func TestBusDeliversAndValidates(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			// Checked after every cleanup, when the clients are closed too.
			ignore := goleak.IgnoreCurrent()
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
			srv := redistest.Shared(t)
			ch := redistest.Prefix(t) + ":bus"
			bus, rec := startBusOn(t, srv.Client(t), bus.Config{Channel: ch, TrackPrefix: mode.prefix})
			awaitReady(t, bus)
			if !bus.Up() {
				t.Fatal("Up() = false after Ready")
			}
			pub := srv.Client(t)
			ctx := context.Background()
			msg, err := wire.Encode(wire.Message{Origin: "peer", Keys: []string{"k1"}})
			if err != nil {
				t.Fatal(err)
			}
			pub.Publish(ctx, ch, "garbage")
			pub.Publish(ctx, ch, msg)
			rec.await(t, "message", func(r *recorder) bool { return len(r.msgs) == 1 && len(r.malformed) == 1 })
			rec.mu.Lock()
			got := rec.msgs[0]
			gotErr := rec.malformed[0]
			rec.mu.Unlock()
			if got.Origin != "peer" || got.Keys[0] != "k1" || got.Kind != wire.KindInvalidate {
				t.Fatalf("message = %+v", got)
			}
			if !errors.Is(gotErr, wire.ErrMalformed) {
				t.Fatalf("malformed error = %v", gotErr)
			}
			own, err := bus.Encode(wire.KindFill, "k2")
			if err != nil {
				t.Fatal(err)
			}
			after, err := wire.Encode(wire.Message{Origin: "peer", Keys: []string{"k3"}})
			if err != nil {
				t.Fatal(err)
			}
			// Delivered in order: by the time k3 arrives, the bus has seen
			// its own message, and dropped it.
			pub.Publish(ctx, ch, own)
			pub.Publish(ctx, ch, after)
			rec.await(t, "the message after its own", func(r *recorder) bool { return len(r.msgs) == 2 })
			rec.mu.Lock()
			got = rec.msgs[1]
			rec.mu.Unlock()
			if got.Keys[0] != "k3" {
				t.Fatalf("own message delivered: %+v", got)
			}
			if err := bus.Close(); err != nil {
				t.Fatal(err)
			}
			if err := bus.Close(); err != nil {
				t.Fatal("second Close:", err)
			}
			if rec.gaps != 0 || rec.ups != 1 {
				t.Fatalf("ups=%d gaps=%d, want 1 and 0", rec.ups, rec.gaps)
			}
		})
	}
}

// TestBusReportsGapAfterKill kills the subscriber's connection on the server
// and expects the bus to report it down, resubscribe, and report a gap.
func TestBusReportsGapAfterKill(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			srv := redistest.Private(t)
			ch := redistest.Prefix(t) + ":bus"
			bus, rec := startBusOn(t, srv.Client(t), bus.Config{
				Channel: ch, TrackPrefix: mode.prefix, PingInterval: 200 * time.Millisecond,
			})
			awaitReady(t, bus)
			if bus.Mode() != mode.want {
				t.Fatalf("Mode() = %q, want %q", bus.Mode(), mode.want)
			}
			admin := srv.Client(t)
			ctx := context.Background()
			if n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 1 {
				t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v", n, err)
			}
			rec.await(t, "gap", func(r *recorder) bool { return r.gaps >= 1 })
			// Messages flow again on the new subscription.
			msg, _ := wire.Encode(wire.Message{Origin: "peer", Keys: []string{"after"}})
			admin.Publish(ctx, ch, msg)
			rec.await(t, "message after resubscribe", func(r *recorder) bool { return len(r.msgs) == 1 })
			if mode.prefix == "" {
				return
			}
			// And Redis tracks keys for the new connection.
			key := mode.prefix + "after-kill"
			admin.Set(ctx, key, "v", 0)
			rec.await(t, "invalidation after resubscribe", func(r *recorder) bool { return r.invalidated[key] == 1 })
			if bus.Mode() != "tracking" {
				t.Fatalf("Mode() = %q after the gap", bus.Mode())
			}
		})
	}
}

// TestBusSurvivesRestart stops Redis under the bus and starts it again.
func TestBusSurvivesRestart(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			srv := redistest.Private(t)
			ch := redistest.Prefix(t) + ":bus"
			bus, rec := startBusOn(t, srv.Client(t), bus.Config{
				Channel: ch, TrackPrefix: mode.prefix, PingInterval: 100 * time.Millisecond,
			})
			awaitReady(t, bus)
			srv.Stop()
			rec.await(t, "down", func(r *recorder) bool { return r.downs >= 1 })
			if bus.Up() {
				t.Fatal("Up() = true with Redis stopped")
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			rec.await(t, "up after restart", func(r *recorder) bool { return r.gaps >= 1 })
			if !bus.Up() {
				t.Fatal("Up() = false after restart")
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.downs != 1 {
				t.Fatalf("%d Down calls for one outage, want 1", rec.downs)
			}
		})
	}
}

func TestBusStartsWithRedisDown(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			srv := redistest.Private(t)
			srv.Stop()
			ch := redistest.Prefix(t) + ":bus"
			bus, rec := startBusOn(t, srv.Client(t), bus.Config{
				Channel: ch, TrackPrefix: mode.prefix, PingInterval: 100 * time.Millisecond,
			})
			rec.await(t, "down", func(r *recorder) bool { return r.downs >= 1 })
			select {
			case <-bus.Ready():
				t.Fatal("ready with Redis down")
			default:
			}
			if bus.Mode() != "" {
				t.Fatalf("Mode() = %q before any confirmation", bus.Mode())
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			awaitReady(t, bus)
			if bus.Mode() != mode.want {
				t.Fatalf("Mode() = %q, want %q", bus.Mode(), mode.want)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.gaps != 0 || rec.ups != 1 {
				t.Fatalf("ups=%d gaps=%d, want 1 and 0", rec.ups, rec.gaps)
			}
		})
	}
}

func TestNewBusValidates(t *testing.T) {
	rec := newRecorder()
	for _, cfg := range []bus.Config{
		{Origin: "a", Handler: rec},
		{Channel: "c", Handler: rec},
		{Channel: "c", Origin: "a"},
		{Channel: "c", Origin: "a", Handler: rec, PingInterval: -1},
		{Channel: "__redis__:invalidate", Origin: "a", Handler: rec, TrackPrefix: "p"},
	} {
		if _, err := bus.New(nil, cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := bus.New(nil, bus.Config{Channel: "c", Origin: "a", Handler: rec}); err == nil {
		t.Error("New without a client succeeded")
	}
}

func TestBusCloseWithoutStart(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	bus, err := bus.New(rdb, bus.Config{
		Channel: "c", Origin: "a", Handler: newRecorder(), TrackPrefix: "p",
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = bus.Close(); _ = bus.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a bus never started hangs")
	}
	bus.Start() // after Close: does nothing
}
