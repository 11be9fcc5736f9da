package bus_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
)

// startSentinel starts a Sentinel watching the master at addr under the
// name "m", and returns its address. It is killed when the test ends.
func startSentinel(t *testing.T, master string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if redistest.InCI() {
			t.Fatal("CI=true but redis-server is not on PATH")
		}
		t.Skip("needs redis-server on PATH to run a Sentinel")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	host, mport, _ := net.SplitHostPort(master)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor m %s %s 1\n"+
		"sentinel down-after-milliseconds m 5000\nsentinel failover-timeout m 10000\n", port, dir, host, mport)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = s.Close() })
	awaitCondition(t, "the Sentinel to see the replica", func() bool {
		replicas, err := s.Replicas(context.Background(), "m").Result()
		return err == nil && len(replicas) == 1 && replicas[0]["flags"] == "slave"
	})
	return addr
}

// TestTrackingFollowsSentinelFailover fails a Sentinel setup over while the
// old master stays up: the bus moves its tracking connection to the new
// master, reports the move as a gap, and reports writes made there.
func TestTrackingFollowsSentinelFailover(t *testing.T) {
	// Replication writes an RDB file in the server's directory.
	primary := redistest.Private(t, "--dir", t.TempDir())
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica := redistest.Private(t, "--replicaof", host, port, "--dir", t.TempDir())
	sentinel := startSentinel(t, primary.Addr)

	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "m", SentinelAddrs: []string{sentinel},
		ContextTimeoutEnabled: true, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	_, rec, prefix := startTracking(t, rdb, 250*time.Millisecond)
	ctx := context.Background()
	if err := rdb.Set(ctx, prefix+"before", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	awaitKey(t, rec, prefix+"before", 1)

	s := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	t.Cleanup(func() { _ = s.Close() })
	// The Sentinel deems the replica unfit (NOGOODSLAVE) until it has its
	// INFO; it asks as soon as it knows of the replica.
	awaitCondition(t, "the Sentinel to start a failover", func() bool {
		err := s.Failover(ctx, "m").Err()
		return err == nil || strings.HasPrefix(err.Error(), "INPROG")
	})
	newMaster := replica.Client(t)
	awaitCondition(t, "the replica to become master", func() bool {
		role, err := newMaster.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	rec.await(t, "gap after the failover", func(r *recorder) bool { return r.gaps >= 1 })
	if err := newMaster.Set(ctx, prefix+"after", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	awaitKey(t, rec, prefix+"after", 1)
}
