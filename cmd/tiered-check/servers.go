package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server start and stop limits: generous, for a loaded 2-core machine.
const (
	serverStartTimeout = 20 * time.Second
	serverStopTimeout  = 10 * time.Second
)

// redisServer is a redis-server this process started, on a loopback port
// it keeps across restarts, without persistence, in a directory of its own.
type redisServer struct {
	name string
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
}

func (s *redisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// startRedis starts a redis-server on a free port, in a new directory
// under parent.
func startRedis(ctx context.Context, parent, name string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &redisServer{name: name, port: port, dir: dir}
	return s, s.start(ctx)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start starts the server (again) on its port and waits until it answers.
// A port still held by a dying process is retried until the timeout.
func (s *redisServer) start(ctx context.Context) error {
	deadline := time.Now().Add(serverStartTimeout)
	for {
		err := s.startOnce(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%s redis-server on %s: %w (log: %s)", s.name, s.Addr(), err, filepath.Join(s.dir, "redis.log"))
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func (s *redisServer) startOnce(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"), "--loglevel", "warning")
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := waitPing(ctx, s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return err
	}
	s.cmd, s.done = cmd, done
	return nil
}

// waitPing waits until a Redis at addr answers PING, or the server exits.
func waitPing(ctx context.Context, addr string, exited <-chan struct{}) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(serverStartTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no answer: %w", err)
		}
		select {
		case <-exited:
			return errors.New("redis-server exited")
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// kill kills the server with SIGKILL (a crash: no persistence, so its data
// is gone) and waits for it to exit.
func (s *redisServer) kill() error {
	return s.signal(syscall.SIGKILL)
}

// stop stops the server: SIGTERM, then SIGKILL if it lingers.
func (s *redisServer) stop() error {
	return s.signal(syscall.SIGTERM)
}

func (s *redisServer) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(serverStopTimeout):
		_ = s.cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(serverStopTimeout):
			return fmt.Errorf("%s redis-server (pid %d) does not exit", s.name, s.cmd.Process.Pid)
		}
	}
	s.cmd, s.done = nil, nil
	return nil
}

// redisVersion returns the server's version, for the report.
func redisVersion(ctx context.Context, rdb *redis.Client) string {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	_, rest, ok := strings.Cut(info, "redis_version:")
	if !ok {
		return "?"
	}
	v, _, _ := strings.Cut(rest, "\r\n")
	return strings.TrimSpace(v)
}
