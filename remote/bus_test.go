package remote_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/remote"
)

// recorder is a BusHandler that records events and lets tests wait for them.
type recorder struct {
	mu        sync.Mutex
	ups, gaps int
	downs     int
	msgs      []remote.Message
	malformed []error
	changed   chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) note() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) Up(gap bool) {
	r.mu.Lock()
	r.ups++
	if gap {
		r.gaps++
	}
	r.mu.Unlock()
	r.note()
}

func (r *recorder) Down(error) {
	r.mu.Lock()
	r.downs++
	r.mu.Unlock()
	r.note()
}

func (r *recorder) Message(m remote.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.note()
}

func (r *recorder) Malformed(err error) {
	r.mu.Lock()
	r.malformed = append(r.malformed, err)
	r.mu.Unlock()
	r.note()
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
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func startBus(t *testing.T, srv *redistest.Server, channel string, ping time.Duration) (*remote.Bus, *recorder) {
	t.Helper()
	rec := newRecorder()
	bus, err := remote.NewBus(srv.Client(t), remote.BusConfig{
		Channel: channel, Origin: "self", Handler: rec,
		PingInterval: ping, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	bus.Start()
	t.Cleanup(func() { _ = bus.Close() })
	return bus, rec
}

func TestBusDeliversAndValidates(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := redistest.Shared(t)
	ch := redistest.Prefix(t) + ":bus"
	bus, rec := startBus(t, srv, ch, time.Second)
	select {
	case <-bus.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("bus not ready")
	}
	if !bus.Up() {
		t.Fatal("Up() = false after Ready")
	}
	pub := srv.Client(t)
	ctx := context.Background()
	msg, err := remote.EncodeMessage(remote.Message{Origin: "peer", Keys: []string{"k1"}})
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
	if got.Origin != "peer" || got.Keys[0] != "k1" || got.Kind != remote.KindInvalidate {
		t.Fatalf("message = %+v", got)
	}
	if !errors.Is(gotErr, remote.ErrMalformed) {
		t.Fatalf("malformed error = %v", gotErr)
	}
	own, err := bus.Encode(remote.KindFill, "k2")
	if err != nil {
		t.Fatal(err)
	}
	pub.Publish(ctx, ch, own)
	rec.await(t, "own message", func(r *recorder) bool { return len(r.msgs) == 2 })
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if rec.gaps != 0 || rec.ups != 1 {
		t.Fatalf("ups=%d gaps=%d, want 1 and 0", rec.ups, rec.gaps)
	}
}

// TestBusReportsGapAfterKill kills the subscriber's connection on the server
// and expects the bus to report it down, resubscribe, and report a gap.
func TestBusReportsGapAfterKill(t *testing.T) {
	srv := redistest.Private(t)
	ch := redistest.Prefix(t) + ":bus"
	bus, rec := startBus(t, srv, ch, 200*time.Millisecond)
	<-bus.Ready()
	admin := srv.Client(t)
	ctx := context.Background()
	if n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v", n, err)
	}
	rec.await(t, "gap", func(r *recorder) bool { return r.gaps >= 1 })
	// Messages flow again on the new subscription.
	msg, _ := remote.EncodeMessage(remote.Message{Origin: "peer", Keys: []string{"after"}})
	admin.Publish(ctx, ch, msg)
	rec.await(t, "message after resubscribe", func(r *recorder) bool { return len(r.msgs) == 1 })
}

// TestBusSurvivesRestart stops Redis under the bus and starts it again.
func TestBusSurvivesRestart(t *testing.T) {
	srv := redistest.Private(t)
	ch := redistest.Prefix(t) + ":bus"
	bus, rec := startBus(t, srv, ch, 100*time.Millisecond)
	<-bus.Ready()
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
}

func TestBusStartsWithRedisDown(t *testing.T) {
	srv := redistest.Private(t)
	srv.Stop()
	ch := redistest.Prefix(t) + ":bus"
	bus, rec := startBus(t, srv, ch, 100*time.Millisecond)
	rec.await(t, "down", func(r *recorder) bool { return r.downs >= 1 })
	select {
	case <-bus.Ready():
		t.Fatal("ready with Redis down")
	default:
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bus.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("bus not ready after Redis started")
	}
}

func TestNewBusValidates(t *testing.T) {
	rec := newRecorder()
	for _, cfg := range []remote.BusConfig{
		{Origin: "a", Handler: rec},
		{Channel: "c", Handler: rec},
		{Channel: "c", Origin: "a"},
		{Channel: "c", Origin: "a", Handler: rec, PingInterval: -1},
	} {
		if _, err := remote.NewBus(nil, cfg); err == nil {
			t.Errorf("NewBus(%+v) succeeded", cfg)
		}
	}
}
