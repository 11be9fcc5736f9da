package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/keys"
)

// recoveryWait bounds the wait for an instance to find Redis again.
const recoveryWait = 30 * time.Second

// outageServer is a Redis the demo may stop and start again: the embedded
// one, or a redis-server of the demo's own. Never a Redis the user named.
type outageServer interface {
	stop()
	start() error
}

// embedded is the embedded Redis, which every instance uses.
type embedded struct{ mr *miniredis.Miniredis }

func (e embedded) stop()        { e.mr.Close() }
func (e embedded) start() error { return e.mr.Restart() }

// outage stops Redis under an instance, reads through the outage, starts
// Redis again and reads until the instance caches again. With the embedded
// Redis, that is the fleet's Redis under in; with the user's Redis, a
// redis-server of the demo's own under a new instance, so that the user's
// Redis keeps running.
func outage(ctx context.Context, in *instance, mr *miniredis.Miniredis, userRedis string, kb *keys.Builder, db *database) error {
	var srv outageServer = embedded{mr}
	if mr == nil {
		own, err := startOwnRedis()
		if err != nil {
			fmt.Printf("6. Redis stops: skipped: the Redis at %s is never stopped, and %v\n", userRedis, err)
			return nil
		}
		defer own.close()
		if in, err = start("instance-O", own.addr, kb, db); err != nil {
			return err
		}
		defer func() {
			_ = in.client.Close()
			_ = in.rdb.Close()
		}()
		srv = own
		fmt.Printf("6. Redis stops: a redis-server of the demo's own on %s, serving a new %s (the Redis at %s keeps running)\n",
			own.addr, in.name, userRedis)
	} else {
		fmt.Println("6. Redis stops")
	}

	srv.stop()
	before := db.queries.Load()
	for i := range 8 {
		id := fmt.Sprint("uuid-9", i)
		db.update(User{ID: id, Email: id + "@example.com"})
		t0 := time.Now()
		u, err := in.get(ctx, id)
		fmt.Printf("   read %d: %q, %v, in %v (breaker open: %v)\n",
			i+1, u.Email, err, time.Since(t0).Round(time.Millisecond), in.client.Stats().BreakerOpen)
	}
	st := in.client.Stats()
	fmt.Printf("   every read answered from the database (%d queries); Redis errors: %d, calls the breaker refused: %d\n\n",
		db.queries.Load()-before, st.RedisErrors, st.BreakerRejections)

	return recovery(ctx, in, srv, kb, db)
}

// recovery starts Redis again and shows the instance caching again.
func recovery(ctx context.Context, in *instance, srv outageServer, kb *keys.Builder, db *database) error {
	fmt.Println("7. Redis comes back")
	t0 := time.Now()
	if err := srv.start(); err != nil {
		fmt.Printf("   Redis did not start again: %v\n", err)
		return nil
	}
	deadline := t0.Add(recoveryWait)
	for st := in.client.Stats(); !st.RedisUp || st.BreakerOpen; st = in.client.Stats() {
		if time.Now().After(deadline) {
			fmt.Printf("   %s did not find Redis again within %v\n", in.name, recoveryWait)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	up := time.Since(t0)
	st := in.client.Stats()
	fmt.Printf("   %s resubscribed %v after Redis started again; its in-process copies were dropped (flushes: %d on the loss, %d after the gap)\n",
		in.name, up.Round(time.Millisecond), st.FlushesDown, st.FlushesGap)

	// A key read during the outage is cached again on its next read.
	id := "uuid-90"
	key, err := kb.Build(ctx, "user", id)
	if err != nil {
		return err
	}
	before := db.queries.Load()
	reads := 0
	for {
		if _, err := in.get(ctx, id); err != nil {
			return err
		}
		reads++
		if in.rdb.Exists(ctx, key).Val() == 1 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("   %s is not in Redis after %d reads\n", id, reads)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	loads := db.queries.Load() - before
	waitL1(ctx, in, id)
	before = db.queries.Load()
	hits := stats(in).HitsL1
	for range 1000 {
		if _, err := in.get(ctx, id); err != nil {
			return err
		}
	}
	fmt.Printf("   %s is cached again after %d read(s), database queries: %d; the next 1000 reads: %d queries, %d in-process hits\n\n",
		id, reads, loads, db.queries.Load()-before, stats(in).HitsL1-hits)
	return nil
}

// ownRedis is a redis-server the demo runs, without persistence, on a free
// loopback port.
type ownRedis struct {
	path, dir, addr string
	cmd             *exec.Cmd
	exited          chan error // the running server's Wait
}

// startOwnRedis starts a redis-server from PATH, or says why it cannot.
func startOwnRedis() (*ownRedis, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("there is no redis-server on PATH to start one of the demo's own")
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("no free port for a redis-server of the demo's own: %v", err)
	}
	dir, err := os.MkdirTemp("", "tiered-demo-redis-")
	if err != nil {
		return nil, fmt.Errorf("a redis-server of the demo's own needs a directory: %v", err)
	}
	s := &ownRedis{path: path, dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if err := s.start(); err != nil {
		s.close()
		return nil, fmt.Errorf("a redis-server of the demo's own did not start: %v", err)
	}
	return s, nil
}

// freePort returns a loopback port nobody listens on, below the range
// outgoing connections take their local ports from (32768 up on Linux), so
// that none of them takes it while the server is down.
func freePort() (int, error) {
	for range 100 {
		port := 29000 + rand.IntN(3700)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	return 0, errors.New("none free in 29000-32699")
}

// start runs the server, on the same port each time, and waits until it
// answers.
func (s *ownRedis) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	s.cmd = exec.Command(s.path, "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", "")
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return err
	}
	cmd, exited := s.cmd, make(chan error, 1)
	s.exited = exited
	go func() { exited <- cmd.Wait() }()
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(recoveryWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		switch {
		case err == nil:
			return nil
		case time.Now().After(deadline):
			s.stop()
			return fmt.Errorf("no answer on %s within %v", s.addr, recoveryWait)
		}
		select {
		case err := <-s.exited:
			s.cmd = nil
			return fmt.Errorf("exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop kills the server, as a crash would.
func (s *ownRedis) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited // gone, so the next start gets the port
	s.cmd = nil
}

func (s *ownRedis) close() {
	s.stop()
	_ = os.RemoveAll(s.dir)
}
