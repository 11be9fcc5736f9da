// Package redistest finds or starts the Redis that tests run against.
//
// In order of preference: the server at REDIS_ADDR; a redis-server from
// PATH started on a free port for this test binary; miniredis, in-process,
// with a loud warning, because it does not behave like Redis in every
// respect (TTLs, cluster, failure modes). When CI=true only a real server
// will do, and its absence fails the tests instead of degrading them.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Kind says what a Server is.
type Kind string

// Kinds of server.
const (
	External    Kind = "external"     // REDIS_ADDR
	RedisServer Kind = "redis-server" // started from PATH by this package
	Miniredis   Kind = "miniredis"    // in-process fake
)

// Server is a Redis the tests can reach.
type Server struct {
	Addr string
	Kind Kind

	mu    sync.Mutex
	cmd   *exec.Cmd
	port  int
	extra []string // more redis-server arguments
	mini  *miniredis.Miniredis
}

// InCI reports whether the tests run in CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error

	startedMu sync.Mutex
	started   []*Server
)

// Main runs the tests of a package and stops every server this package
// started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	startedMu.Lock()
	for _, s := range started {
		s.Stop()
	}
	startedMu.Unlock()
	os.Exit(code)
}

// Shared returns the Redis shared by the tests of this binary. Tests on it
// must keep to their own keys and channels (see Prefix).
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = findShared() })
	if sharedErr != nil {
		t.Fatalf("redistest: %v", sharedErr)
	}
	if shared.Kind == Miniredis {
		t.Logf("redistest: WARNING: no real Redis (set REDIS_ADDR or put redis-server on PATH); running against miniredis")
	}
	return shared
}

func findShared() (*Server, error) {
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		if err := ping(addr); err != nil {
			return nil, fmt.Errorf("REDIS_ADDR=%s does not answer: %v", addr, err)
		}
		return &Server{Addr: addr, Kind: External}, nil
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		return startServer()
	}
	if InCI() {
		return nil, fmt.Errorf("CI=true but no real Redis: set REDIS_ADDR or install redis-server")
	}
	fmt.Fprintln(os.Stderr, "redistest: WARNING: no real Redis found (REDIS_ADDR unset, no redis-server on PATH); falling back to miniredis, which does not behave like Redis in every respect")
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: m.Addr(), Kind: Miniredis, mini: m}
	track(s)
	return s, nil
}

// Private starts a redis-server for this test alone, with args added to
// its command line, which the test may stop and restart. Without redis-server on PATH the test is skipped, or
// fails in CI.
func Private(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if InCI() {
			t.Fatalf("redistest: CI=true but redis-server is not on PATH")
		}
		t.Skip("redistest: SKIPPED: this test stops and restarts Redis and needs redis-server on PATH")
	}
	s, err := startServer(args...)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func startServer(args ...string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Kind: RedisServer, port: port, extra: args}
	if err := s.Start(); err != nil {
		return nil, err
	}
	track(s)
	return s, nil
}

func track(s *Server) {
	startedMu.Lock()
	started = append(started, s)
	startedMu.Unlock()
}

// Start (re)starts a server this package started, on its original port,
// and waits until it answers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Kind != RedisServer {
		return fmt.Errorf("redistest: cannot start a %s server", s.Kind)
	}
	if s.cmd != nil {
		return nil
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}
	cmd := exec.Command("redis-server", append(args, s.extra...)...)
	cmd.SysProcAttr = serverAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s did not answer: %w", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops a server this package started. Stopping an external server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.cmd != nil:
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	case s.mini != nil:
		s.mini.Close()
	}
}

// Real reports whether the server is a real Redis.
func (s *Server) Real() bool { return s.Kind != Miniredis }

// Options returns client options for the server: short timeouts, and
// context deadlines honoured on the socket, as the library recommends.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:                  s.Addr,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		MaxRetries:            -1,
	}
}

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Prefix returns a key prefix unique to this test run, so tests sharing a
// server never see each other's keys or messages.
func Prefix(t testing.TB) string {
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(name) + "_" + hex.EncodeToString(b[:])
}

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
