package tieredcache_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// instance is one simulated process: its own Redis client and Client.
type instance struct {
	name   string
	rdb    redis.UniversalClient
	client *tiered.Client
	users  *tiered.Cache[User]
}

// topology is a kind of Redis deployment the suite runs against.
type topology struct {
	name string
	// client returns a new client whose connections carry name.
	client func(t *testing.T, name string) redis.UniversalClient
}

// topologies returns a single Redis and a Redis Cluster. The cluster is
// skipped, saying so, where none can be found, and fails the run in CI.
func forEachTopology(t *testing.T, f func(t *testing.T, topo topology)) {
	t.Run("single", func(t *testing.T) {
		srv := redistest.Shared(t)
		f(t, topology{name: "single", client: func(t *testing.T, name string) redis.UniversalClient {
			o := srv.Options()
			o.ClientName = name
			rdb := redis.NewClient(o)
			t.Cleanup(func() { _ = rdb.Close() })
			return rdb
		}})
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.SharedCluster(t)
		f(t, topology{name: "cluster", client: func(t *testing.T, name string) redis.UniversalClient {
			o := cl.Options()
			o.ClientName = name
			rdb := redis.NewClusterClient(o)
			t.Cleanup(func() { _ = rdb.Close() })
			return rdb
		}})
	})
}

type fleet struct {
	prefix    string
	kb        *keys.Builder
	instances []*instance
	admin     redis.UniversalClient
}

// newFleet starts n instances under a prefix of their own.
func newFleet(t *testing.T, topo topology, n int, kopts ...keys.Option) *fleet {
	t.Helper()
	return newFleetWith(t, topo, n, tiered.Options{}, kopts...)
}

// newFleetWith is newFleet with options for every instance; Redis, Keys,
// InstanceID and HealthCheckInterval are set here.
func newFleetWith(t *testing.T, topo topology, n int, opts tiered.Options, kopts ...keys.Option) *fleet {
	t.Helper()
	prefix := redistest.Prefix(t)
	kb, err := keys.New(prefix, kopts...)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{prefix: prefix, kb: kb, admin: topo.client(t, prefix+"-admin")}
	for i := range n {
		name := fmt.Sprintf("%s-%c", prefix, 'a'+i)
		rdb := topo.client(t, name)
		o := opts
		o.Redis, o.Keys, o.InstanceID, o.HealthCheckInterval = rdb, kb, name, 200*time.Millisecond
		if o.OpTimeout == 0 {
			// Generous: these tests are not about timeouts, and must pass on
			// a loaded machine under the race detector.
			o.OpTimeout = 2 * time.Second
		}
		client, err := tiered.New(o)
		if err != nil {
			t.Fatal(err)
		}
		if !client.Stats().RedisUp {
			t.Fatalf("instance %s: Redis not up after New", name)
		}
		users, err := tiered.NewCache[User](client, "user")
		if err != nil {
			t.Fatal(err)
		}
		f.instances = append(f.instances, &instance{name: name, rdb: rdb, client: client, users: users})
	}
	t.Cleanup(func() {
		for _, in := range f.instances {
			if err := in.client.Close(); err != nil {
				t.Errorf("Close %s: %v", in.name, err)
			}
		}
	})
	return f
}

func (f *fleet) key(t *testing.T, id string) string {
	t.Helper()
	k, err := f.kb.Build(context.Background(), "user", id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// eventually polls cond until it holds or the deadline passes. It is for
// effects that cross a process boundary (a pub/sub delivery), which a test
// can only observe, not synchronise with.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fetchResult is what a Fetch returned.
type fetchResult struct {
	u   User
	err error
}

// gatedFetch starts a Fetch of id on in whose loader holds until proceed
// is closed, then returns loaded; it returns once the loader is running.
func gatedFetch(in *instance, id string, loaded User) (proceed chan struct{}, done <-chan fetchResult) {
	started, proceed := make(chan struct{}), make(chan struct{})
	out := make(chan fetchResult, 1)
	go func() {
		u, err := in.users.Fetch(context.Background(), id, func(context.Context, string) (User, error) {
			close(started)
			<-proceed
			return loaded, nil
		})
		out <- fetchResult{u, err}
	}()
	<-started
	return proceed, out
}

// killPubSub kills the pub/sub connection of one instance, on whichever
// node holds it: CLIENT KILL TYPE pubsub ID <id>.
func killPubSub(t *testing.T, admin redis.UniversalClient, name string) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	killed := 0
	kill := func(ctx context.Context, node *redis.Client) error {
		list, err := node.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+name+" ") || !strings.Contains(line, "flags=P") {
				continue
			}
			for _, field := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(field, "id="); ok {
					n, err := node.ClientKillByFilter(ctx, "TYPE", "pubsub", "ID", id).Result()
					if err != nil {
						return err
					}
					mu.Lock()
					killed += int(n)
					mu.Unlock()
				}
			}
		}
		return nil
	}
	var err error
	switch c := admin.(type) {
	case *redis.ClusterClient:
		err = c.ForEachShard(ctx, kill)
	case *redis.Client:
		err = kill(ctx, c)
	default:
		t.Fatalf("killPubSub: unsupported client %T", admin)
	}
	if err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("killed %d pub/sub connections named %s, want 1", killed, name)
	}
}
