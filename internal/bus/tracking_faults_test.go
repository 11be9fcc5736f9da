package bus_test

import (
	"github.com/tieredcache/tieredcache/internal/wire"

	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/bus"
	"github.com/tieredcache/tieredcache/internal/faultproxy"
)

// TestTrackingDetectsHungServer hangs the connection between the bus and
// Redis: the unanswered ping reports Down, and the bus comes back with a
// gap once traffic flows again, tracking.
func TestTrackingDetectsHungServer(t *testing.T) {
	srv := realServer(t)
	proxy, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	opt := srv.Options()
	opt.Addr = proxy.Addr()
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	_, rec, prefix := startTracking(t, rdb, 250*time.Millisecond)

	proxy.SetMode(faultproxy.Hang)
	rec.await(t, "down", func(r *recorder) bool { return r.downs == 1 })
	proxy.SetMode(faultproxy.Pass)
	rec.await(t, "gap", func(r *recorder) bool { return r.gaps == 1 })
	raw := srv.Client(t)
	cleanupKeys(t, raw, prefix)
	raw.Set(context.Background(), prefix+"k", "v", 0)
	awaitKey(t, rec, prefix+"k", 1)
}

// fakeRedis is just enough of a Redis server to let a tracking bus connect,
// subscribe and then receive frames a real Redis never sends.
type fakeRedis struct {
	ln     net.Listener
	frames []string // written after the subscription is confirmed
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startFakeRedis(t *testing.T, frames ...string) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln, frames: frames}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeRedis) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *fakeRedis) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// serve answers commands until the connection closes.
func (f *fakeRedis) serve(c net.Conn) {
	defer f.wg.Done()
	rd := bufio.NewReader(c)
	for {
		args, err := readCommand(rd)
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, f.reply(args)); err != nil {
			return
		}
	}
}

// reply returns the wire reply to a command.
func (f *fakeRedis) reply(args []string) string {
	cmd := strings.ToUpper(strings.Join(args[:min(2, len(args))], " "))
	switch {
	case strings.HasPrefix(cmd, "HELLO"):
		return "-ERR unknown command 'HELLO'\r\n"
	case cmd == "CLIENT ID":
		return ":7\r\n"
	case strings.HasPrefix(cmd, "INFO"):
		return bulk("run_id:fake\r\n")
	case strings.HasPrefix(cmd, "PING"):
		return "*2\r\n" + bulk("pong") + bulk("")
	case strings.HasPrefix(cmd, "SUBSCRIBE"):
		var out strings.Builder
		for i, ch := range args[1:] {
			fmt.Fprintf(&out, "*3\r\n%s%s:%d\r\n", bulk("subscribe"), bulk(ch), i+1)
		}
		return out.String() + strings.Join(f.frames, "")
	}
	return "+OK\r\n"
}

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// readCommand reads one command, an array of bulk strings.
func readCommand(rd *bufio.Reader) ([]string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		if _, err := rd.ReadString('\n'); err != nil { // $len
			return nil, err
		}
		arg, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		args[i] = strings.TrimSuffix(arg, "\r\n")
	}
	return args, nil
}

// invalidation returns a tracking message frame with the given payload.
func invalidation(payload string) string {
	return "*3\r\n" + bulk("message") + bulk("__redis__:invalidate") + payload
}

// TestTrackingSurvivesHostileFrames feeds a tracking bus frames that a
// real Redis never sends, some of which make go-redis panic: each is
// reported as Malformed (and, where it may have been an invalidation, as
// a flush), the bus neither panics nor drops its connection, and a valid
// invalidation that follows still arrives.
func TestTrackingSurvivesHostileFrames(t *testing.T) {
	fake := startFakeRedis(t,
		invalidation("*2\r\n"+bulk("p:a")+":5\r\n"), // a number among the keys: go-redis panics
		invalidation("*0\r\n"),                      // no keys
		"*0\r\n",                                    // an empty reply: go-redis panics
		"*1\r\n:1\r\n",                              // a number for a kind: go-redis panics
		invalidation(bulk("p:forged")),              // a string: published, not tracked
		invalidation("$-1\r\n"),                     // null: flush
		invalidation("*1\r\n"+bulk("p:b")),          // valid
	)
	rdb := redis.NewClient(&redis.Options{Addr: fake.ln.Addr().String(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	bus, rec := startBusOn(t, rdb, bus.Config{Channel: "bus", TrackPrefix: "p:"})
	awaitReady(t, bus)
	if bus.Mode() != "tracking" {
		t.Fatalf("Mode() = %q", bus.Mode())
	}
	awaitKey(t, rec, "p:b", 1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.malformed) != 5 || rec.flushes != 4 {
		t.Fatalf("malformed=%d flushes=%d, want 5 and 4: %v", len(rec.malformed), rec.flushes, rec.malformed)
	}
	for _, err := range rec.malformed {
		if !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("Malformed(%v), want wire.ErrMalformed", err)
		}
	}
	if rec.gaps != 0 || rec.downs != 0 || len(rec.invalidated) != 1 {
		t.Fatalf("gaps=%d downs=%d invalidated=%v, want only p:b", rec.gaps, rec.downs, rec.invalidated)
	}
	if want := []string{"up", "malformed", "flush", "malformed", "malformed", "flush", "malformed", "flush", "malformed", "flush", "inv"}; !slicesEqual(rec.calls, want) {
		t.Fatalf("calls = %v, want %v", rec.calls, want)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestTrackingCloseIsPrompt closes a bus whose server hangs mid-handshake.
func TestTrackingCloseIsPrompt(t *testing.T) {
	srv := realServer(t)
	proxy, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	proxy.SetMode(faultproxy.Hang)
	opt := srv.Options()
	opt.Addr = proxy.Addr()
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	bus, err := bus.New(rdb, bus.Config{
		Channel: "bus", Origin: "self", TrackPrefix: "p:", Handler: newRecorder(), PingInterval: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	bus.Start()
	// Let the bus reach the hung handshake.
	awaitCondition(t, "the handshake", func() bool { return proxy.Received() > 0 })
	start := time.Now()
	_ = bus.Close()
	// Without closing the connection, Close would wait for the read
	// timeout (1s here).
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Close took %v with a hung server", d)
	}
}

// hugeLength matches a RESP length go-redis would try to allocate.
var hugeLength = regexp.MustCompile(`[$*%~>|=]\d{7,}`)

// FuzzTrackingFrames feeds a tracking bus whatever bytes follow its
// subscription. The bus must never panic, and never lose an invalidation
// unnoticed: the valid one sent after the bytes arrives, or the bus
// reports that anything may have changed (a flush, a Down, a gap).
func FuzzTrackingFrames(f *testing.F) {
	for _, seed := range []string{
		invalidation("*2\r\n" + bulk("p:a") + ":5\r\n"),
		invalidation("*0\r\n"),
		"*0\r\n",
		"*1\r\n:1\r\n",
		invalidation(bulk("p:forged")),
		invalidation("$-1\r\n"),
		invalidation("*-1\r\n"),
		"*3\r\n" + bulk("message") + ":1\r\n" + bulk("x"),
		"*4\r\n" + bulk("pmessage") + bulk("p*") + bulk("p:x") + "*0\r\n",
		"%1\r\n+a\r\n+b\r\n",
		">2\r\n" + bulk("invalidate") + "*1\r\n" + bulk("p:a"),
		"*3\r\n",  // swallows the next reply whole
		"$30\r\n", // swallows the next reply as a string
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frame string) {
		if hugeLength.MatchString(frame) {
			// go-redis allocates whatever length a server announces: a
			// hostile server is beyond what the bus can defend against.
			t.Skip()
		}
		fake := startFakeRedis(t, frame, invalidation("*1\r\n"+bulk("p:end")))
		rdb := redis.NewClient(&redis.Options{Addr: fake.ln.Addr().String(), MaxRetries: -1})
		defer rdb.Close()
		rec := newRecorder()
		bus, err := bus.New(rdb, bus.Config{
			Channel: "bus", Origin: "self", TrackPrefix: "p:", Handler: rec,
			PingInterval: 50 * time.Millisecond, MinBackoff: time.Second, MaxBackoff: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		bus.Start()
		defer bus.Close()
		rec.await(t, "the end marker, or a flush, Down or gap", func(r *recorder) bool {
			return r.invalidated["p:end"] > 0 || r.flushes > 0 || r.downs > 0 || r.gaps > 0
		})
	})
}
