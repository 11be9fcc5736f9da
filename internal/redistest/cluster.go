package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster the tests can reach.
type Cluster struct {
	Addrs []string
	nodes []*Server // started by this package; empty for REDIS_CLUSTER_ADDRS
}

var (
	clusterOnce sync.Once
	cluster     *Cluster
	clusterErr  error
)

// SharedCluster returns the Redis Cluster shared by the tests of this
// binary: REDIS_CLUSTER_ADDRS (comma-separated) if set, else three
// cluster-enabled redis-servers from PATH joined by redis-cli. Without
// either the test is skipped, or fails in CI.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = findCluster() })
	if clusterErr != nil {
		if InCI() {
			t.Fatalf("redistest: CI=true but no Redis Cluster: %v", clusterErr)
		}
		t.Skipf("redistest: SKIPPED: no Redis Cluster (%v); set REDIS_CLUSTER_ADDRS or install redis-server and redis-cli", clusterErr)
	}
	return cluster
}

func findCluster() (*Cluster, error) {
	if env := os.Getenv("REDIS_CLUSTER_ADDRS"); env != "" {
		c := &Cluster{Addrs: strings.Split(env, ",")}
		return c, c.waitOK(5 * time.Second)
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not on PATH", bin)
		}
	}
	return startCluster(3)
}

func startCluster(n int) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "redistest-cluster")
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	for range n {
		port, err := clusterPort()
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Kind: RedisServer, port: port,
			extra: []string{"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("%s/nodes-%d.conf", dir, port),
				"--cluster-node-timeout", "5000", "--dir", dir}}
		if err := s.Start(); err != nil {
			return nil, err
		}
		track(s)
		c.nodes = append(c.nodes, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	return c, c.waitOK(20 * time.Second)
}

// clusterPort picks a port that is free along with its cluster bus port
// (port+10000), both below the ephemeral range (32768 up) from which
// outgoing connections take their local ports.
func clusterPort() (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(2700)
		if portFree(p) && portFree(p+10000) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// waitOK waits until every node reports cluster_state:ok.
func (c *Cluster) waitOK(within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, addr := range c.Addrs {
		for {
			rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
			info, err := rdb.ClusterInfo(context.Background()).Result()
			_ = rdb.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cluster node %s not ok: %v %q", addr, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Options returns client options for the cluster.
func (c *Cluster) Options() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                 c.Addrs,
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		MaxRetries:            -1,
	}
}

// Client returns a new client of the cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := redis.NewClusterClient(c.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
