package bus_test

import (
	"github.com/tieredcache/tieredcache/internal/wire"

	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/bus"
	"github.com/tieredcache/tieredcache/internal/redistest"
)

// realServer returns the shared server, skipping the test on miniredis,
// which does not track keys (redistest fails instead in CI).
func realServer(t *testing.T) *redistest.Server {
	t.Helper()
	srv := redistest.Shared(t)
	if !srv.Real() {
		t.Skip("tracking needs a real Redis")
	}
	return srv
}

// startTracking starts a tracking bus over rdb whose keys and channel are
// under a prefix of this test's own, and waits until it is ready.
func startTracking(t *testing.T, rdb redis.UniversalClient, ping time.Duration) (*bus.Bus, *recorder, string) {
	t.Helper()
	prefix := redistest.Prefix(t) + ":"
	bus, rec := startBusOn(t, rdb, bus.Config{
		Channel: prefix + "bus", TrackPrefix: prefix, PingInterval: ping,
	})
	awaitReady(t, bus)
	if bus.Mode() != "tracking" {
		t.Fatalf("Mode() = %q, want %q", bus.Mode(), "tracking")
	}
	return bus, rec, prefix
}

// cleanupKeys deletes, when the test ends, the keys under prefix that it
// left on the shared server.
func cleanupKeys(t *testing.T, rdb *redis.Client, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
}

// awaitKey waits until key was reported n times in all.
func awaitKey(t *testing.T, rec *recorder, key string, n int) {
	t.Helper()
	rec.await(t, fmt.Sprintf("invalidation #%d of %s", n, key), func(r *recorder) bool { return r.invalidated[key] >= n })
}

// TestTrackingReportsEveryWrite writes with a plain client, as another
// service would, and expects every change under the prefix, and only
// those, to reach Invalidate.
func TestTrackingReportsEveryWrite(t *testing.T) {
	srv := realServer(t)
	_, rec, prefix := startTracking(t, srv.Client(t), time.Second)
	raw := srv.Client(t)
	cleanupKeys(t, raw, prefix)
	ctx := context.Background()
	k1, k2, k3 := prefix+"set", prefix+"setex", prefix+"expiring"

	if err := raw.Set(ctx, k1, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	awaitKey(t, rec, k1, 1)
	//lint:ignore SA1019 SETEX is what the Python template writes: the test checks Redis reports it
	raw.SetEx(ctx, k2, "v", time.Hour)
	awaitKey(t, rec, k2, 1)
	raw.Del(ctx, k1)
	awaitKey(t, rec, k1, 2)
	raw.MSet(ctx, k1, "a", k2, "b")
	awaitKey(t, rec, k1, 3)
	awaitKey(t, rec, k2, 2)

	// EXPIRE changes the key, and so does its expiry, whether Redis finds
	// it on its own (active expiry, which samples keys and may take long on
	// a Redis holding many) or when a client touches the key.
	raw.Set(ctx, k3, "v", 0)
	awaitKey(t, rec, k3, 1)
	expires := time.Now().Add(20 * time.Millisecond)
	raw.PExpire(ctx, k3, 20*time.Millisecond)
	awaitKey(t, rec, k3, 2)
	time.Sleep(time.Until(expires) + time.Millisecond)
	if n, err := raw.Exists(ctx, k3).Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS %s after its expiry = %d, %v", k3, n, err)
	}
	awaitKey(t, rec, k3, 3)

	// A key outside the prefix is never reported. Redis sends the
	// invalidations of one prefix in order, so once the marker written
	// after it arrived, the outside key would have too.
	outside := strings.TrimSuffix(prefix, ":") + "-outside"
	t.Cleanup(func() { raw.Del(context.Background(), outside) })
	raw.Set(ctx, outside, "v", 0)
	raw.Set(ctx, prefix+"marker", "v", 0)
	awaitKey(t, rec, prefix+"marker", 1)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for k := range rec.invalidated {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("key %q outside the prefix was reported", k)
		}
	}
	if rec.flushes != 0 || rec.gaps != 0 || rec.downs != 0 || len(rec.malformed) != 0 {
		t.Errorf("flushes=%d gaps=%d downs=%d malformed=%v, want none", rec.flushes, rec.gaps, rec.downs, rec.malformed)
	}
}

// TestTrackingKeepsTheAppChannel publishes on the app channel of a tracking
// bus: other processes' messages still arrive; its own are dropped.
func TestTrackingKeepsTheAppChannel(t *testing.T) {
	srv := realServer(t)
	bus, rec, prefix := startTracking(t, srv.Client(t), time.Second)
	ctx := context.Background()
	own, err := bus.Encode(wire.KindInvalidate, prefix+"own")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := wire.Encode(wire.Message{Origin: "peer", Keys: []string{prefix + "k"}})
	if err != nil {
		t.Fatal(err)
	}
	pub := srv.Client(t)
	pub.Publish(ctx, prefix+"bus", own)
	pub.Publish(ctx, prefix+"bus", peer)
	rec.await(t, "the peer's message", func(r *recorder) bool { return len(r.msgs) >= 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if m := rec.msgs[0]; len(rec.msgs) != 1 || m.Origin != "peer" || m.Keys[0] != prefix+"k" {
		t.Fatalf("messages = %+v, want only the peer's", rec.msgs)
	}
}

// TestTrackingReportsFlushes expects FLUSHDB and FLUSHALL, which Redis
// reports as a null invalidation, to reach Invalidate(nil). It runs on a
// private server, not to wipe the shared one.
func TestTrackingReportsFlushes(t *testing.T) {
	srv := redistest.Private(t)
	_, rec, prefix := startTracking(t, srv.Client(t), time.Second)
	raw := srv.Client(t)
	ctx := context.Background()
	raw.Set(ctx, prefix+"k", "v", 0)
	awaitKey(t, rec, prefix+"k", 1)
	if err := raw.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "flush after FLUSHDB", func(r *recorder) bool { return r.flushes == 1 })
	if err := raw.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "flush after FLUSHALL", func(r *recorder) bool { return r.flushes == 2 })
	// The connection goes on tracking.
	raw.Set(ctx, prefix+"k", "v", 0)
	awaitKey(t, rec, prefix+"k", 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.gaps != 0 || len(rec.malformed) != 0 {
		t.Fatalf("gaps=%d malformed=%v, want none", rec.gaps, rec.malformed)
	}
}

// TestTrackingRejectsForgedMessages publishes on the tracking channel, as
// any client may: a string payload is Malformed, and tracking goes on.
func TestTrackingRejectsForgedMessages(t *testing.T) {
	srv := redistest.Private(t)
	_, rec, prefix := startTracking(t, srv.Client(t), time.Second)
	raw := srv.Client(t)
	ctx := context.Background()
	raw.Publish(ctx, "__redis__:invalidate", prefix+"forged")
	rec.await(t, "malformed", func(r *recorder) bool { return len(r.malformed) == 1 })
	raw.Set(ctx, prefix+"real", "v", 0)
	awaitKey(t, rec, prefix+"real", 1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !errors.Is(rec.malformed[0], wire.ErrMalformed) {
		t.Errorf("Malformed(%v), want wire.ErrMalformed", rec.malformed[0])
	}
	if rec.invalidated[prefix+"forged"] != 0 || rec.flushes != 0 || rec.gaps != 0 {
		t.Errorf("forged message acted on: %v flushes=%d gaps=%d", rec.invalidated, rec.flushes, rec.gaps)
	}
}

// TestTrackingFallsBackOnMiniredis runs a tracking bus on miniredis, which
// has no CLIENT TRACKING: the bus runs on the app channel alone.
func TestTrackingFallsBackOnMiniredis(t *testing.T) {
	mini := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mini.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	bus, rec := startBusOn(t, rdb, bus.Config{Channel: "bus", TrackPrefix: "app:"})
	awaitReady(t, bus)
	if bus.Mode() != "pubsub" {
		t.Fatalf("Mode() = %q, want %q", bus.Mode(), "pubsub")
	}
	msg, _ := wire.Encode(wire.Message{Origin: "peer", Keys: []string{"app:k"}})
	rdb.Publish(context.Background(), "bus", msg)
	rec.await(t, "message", func(r *recorder) bool { return len(r.msgs) == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.downs != 0 || rec.gaps != 0 {
		t.Fatalf("downs=%d gaps=%d, want a silent fallback", rec.downs, rec.gaps)
	}
}

// aclUser creates a user that may do everything, CLIENT included unless
// client is false, and returns options that log in as it.
func aclUser(t *testing.T, srv *redistest.Server, client bool) *redis.Options {
	t.Helper()
	rule := "+client"
	if !client {
		rule = "-client"
	}
	if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", rule).Err(); err != nil {
		t.Fatal(err)
	}
	opt := srv.Options()
	opt.Username, opt.Password = "app", "pw"
	return opt
}

// TestTrackingFallsBackWithoutPermission runs a tracking bus as a user whose
// ACL denies CLIENT: the bus runs on the app channel alone.
func TestTrackingFallsBackWithoutPermission(t *testing.T) {
	srv := redistest.Private(t)
	rdb := redis.NewClient(aclUser(t, srv, false))
	t.Cleanup(func() { _ = rdb.Close() })
	bus, rec := startBusOn(t, rdb, bus.Config{Channel: "bus", TrackPrefix: "app:"})
	awaitReady(t, bus)
	if bus.Mode() != "pubsub" {
		t.Fatalf("Mode() = %q, want %q", bus.Mode(), "pubsub")
	}
	msg, _ := wire.Encode(wire.Message{Origin: "peer", Keys: []string{"app:k"}})
	srv.Client(t).Publish(context.Background(), "bus", msg)
	rec.await(t, "message", func(r *recorder) bool { return len(r.msgs) == 1 })
}

// TestTrackingRefusedLaterIsAnOutage takes CLIENT away from the bus's user
// after the bus chose tracking: the bus reports Down and keeps trying in
// tracking mode, and comes back with a gap once CLIENT is allowed again.
func TestTrackingRefusedLaterIsAnOutage(t *testing.T) {
	srv := redistest.Private(t)
	rdb := redis.NewClient(aclUser(t, srv, true))
	t.Cleanup(func() { _ = rdb.Close() })
	bus, rec, prefix := startTracking(t, rdb, 500*time.Millisecond)
	admin := srv.Client(t)
	ctx := context.Background()

	aclUser(t, srv, false)
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	rec.await(t, "down", func(r *recorder) bool { return r.downs == 1 })
	// Let the bus be refused a few times, as Redis's ACL log tells.
	awaitRefusals(t, admin, 3)
	if bus.Up() || bus.Mode() != "tracking" {
		t.Fatalf("Up()=%v Mode()=%q while tracking is refused", bus.Up(), bus.Mode())
	}
	rec.mu.Lock()
	ups := rec.ups
	rec.mu.Unlock()
	if ups != 1 {
		t.Fatalf("%d Up calls while tracking is refused, want none since the first", ups-1)
	}

	aclUser(t, srv, true)
	rec.await(t, "gap", func(r *recorder) bool { return r.gaps == 1 })
	admin.Set(ctx, prefix+"k", "v", 0)
	awaitKey(t, rec, prefix+"k", 1)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.downs != 1 || len(rec.msgs) != 0 {
		t.Fatalf("downs=%d msgs=%d, want one Down for the outage", rec.downs, len(rec.msgs))
	}
}

// awaitRefusals waits until Redis's ACL log shows n refusals of CLIENT ID to
// the user app.
func awaitRefusals(t *testing.T, admin *redis.Client, n int64) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for {
		entries, err := admin.ACLLog(context.Background(), 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Username == "app" && e.Object == "client|id" && e.Count >= n {
				return
			}
		}
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("ACL log never showed %d refusals of CLIENT ID: %+v", n, entries)
		}
	}
}

// clusterClient returns a client of the shared cluster whose connections
// are named name, so a test can find the bus's among them.
func clusterClient(t *testing.T, c *redistest.Cluster, name string) *redis.ClusterClient {
	t.Helper()
	opt := c.Options()
	opt.ClientName = name
	rdb := redis.NewClusterClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// keysPerMaster returns, for every master of the cluster, a key under
// prefix that the master owns.
func keysPerMaster(t *testing.T, rdb *redis.ClusterClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	n := 0
	err := rdb.ForEachMaster(ctx, func(context.Context, *redis.Client) error {
		mu.Lock()
		n++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]string)
	for i := 0; len(keys) < n && i < 10000; i++ {
		key := fmt.Sprintf("%sk%d", prefix, i)
		c, err := rdb.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := keys[c.Options().Addr]; !ok {
			keys[c.Options().Addr] = key
		}
	}
	if len(keys) != n {
		t.Fatalf("found keys for %d of %d masters", len(keys), n)
	}
	return keys
}

// busConn returns the id of the subscribed connection named name on the
// node at addr, or "" if there is none.
func busConn(t *testing.T, node *redis.Client, name string) string {
	t.Helper()
	list, err := node.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " sub=") && !strings.Contains(line, " sub=0 ") {
			return strings.TrimPrefix(strings.Fields(line)[0], "id=")
		}
	}
	return ""
}

// killBusConn kills, on the node at addr, the subscribed connection named
// name, and waits until another one takes its place.
func killBusConn(t *testing.T, addr, name string) {
	t.Helper()
	node := redis.NewClient(&redis.Options{Addr: addr})
	defer node.Close()
	id := busConn(t, node, name)
	if id == "" {
		t.Fatalf("no subscribed connection named %s on %s", name, addr)
	}
	if err := node.ClientKillByFilter(context.Background(), "ID", id).Err(); err != nil {
		t.Fatal(err)
	}
	awaitCondition(t, "a new subscribed connection", func() bool {
		now := busConn(t, node, name)
		return now != "" && now != id
	})
}

// TestTrackingCluster expects writes to keys of every master to reach
// Invalidate, the app channel to deliver each message once, and a killed
// connection to come back with a gap.
func TestTrackingCluster(t *testing.T) {
	c := redistest.SharedCluster(t)
	name := "bus-" + redistest.Prefix(t)
	rdb := clusterClient(t, c, name)
	bus, rec, prefix := startTracking(t, rdb, time.Second)
	raw := c.Client(t)
	ctx := context.Background()
	keys := keysPerMaster(t, raw, prefix)
	for _, key := range keys {
		if err := raw.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range keys {
		awaitKey(t, rec, key, 1)
	}

	// One subscription to the app channel, though PUBLISH reaches every
	// node: a message arrives once. Its copies, were there any, would
	// arrive on other nodes' connections, ahead of the writes that follow.
	msg, _ := wire.Encode(wire.Message{Origin: "peer", Keys: []string{prefix + "x"}})
	raw.Publish(ctx, prefix+"bus", msg)
	rec.await(t, "message", func(r *recorder) bool { return len(r.msgs) >= 1 })
	for _, key := range keys {
		raw.Set(ctx, key, "v", 0)
	}
	for _, key := range keys {
		awaitKey(t, rec, key, 2)
	}

	// A lost connection comes back with a gap, and tracks again.
	addrs := slices.Sorted(maps.Keys(keys))
	victim := addrs[len(addrs)-1]
	killBusConn(t, victim, name)
	rec.await(t, "gap", func(r *recorder) bool { return r.gaps >= 1 })
	raw.Set(ctx, keys[victim], "v", 0)
	awaitKey(t, rec, keys[victim], 3)
	if bus.Mode() != "tracking" {
		t.Fatalf("Mode() = %q", bus.Mode())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.msgs) != 1 {
		t.Fatalf("%d app messages, want 1", len(rec.msgs))
	}
}

// startClusterNode starts a private cluster-enabled redis-server whose
// cluster bus port lies below the ephemeral range, as redistest does for
// its own cluster.
func startClusterNode(t *testing.T, dir string) *redistest.Server {
	t.Helper()
	for range 100 {
		bus := 23000 + rand.IntN(9000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bus)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return redistest.Private(t, "--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", bus)), "--dir", dir,
			"--cluster-node-timeout", "5000", "--cluster-require-full-coverage", "no")
	}
	t.Fatal("no free cluster bus port")
	return nil
}

// awaitCondition polls cond, a question put to Redis, until it holds.
func awaitCondition(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTrackingFollowsTopology builds a two-node cluster where one node owns
// every slot, then hands one of them to the other and back: the bus adds
// a tracking connection for the new master, reports the change as a gap,
// and drops the connection when the master has no slot left.
func TestTrackingFollowsTopology(t *testing.T) {
	dir := t.TempDir()
	a := startClusterNode(t, dir)
	b := startClusterNode(t, dir)
	na, nb := a.Client(t), b.Client(t)
	ctx := context.Background()
	if err := na.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	meetBus := clusterBusPort(t, na)
	host, port, _ := net.SplitHostPort(a.Addr)
	if err := nb.Do(ctx, "CLUSTER", "MEET", host, port, meetBus).Err(); err != nil {
		t.Fatal(err)
	}
	clusterOK := func(n *redis.Client) func() bool {
		return func() bool {
			info, err := n.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:2")
		}
	}
	awaitCondition(t, "node a sees the cluster", clusterOK(na))
	awaitCondition(t, "node b sees the cluster", clusterOK(nb))

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{a.Addr}, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	_, rec, prefix := startTracking(t, rdb, 500*time.Millisecond)
	key := prefix + "moving"
	slot, err := na.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	idA, idB := na.ClusterMyID(ctx).Val(), nb.ClusterMyID(ctx).Val()
	moveSlot := func(to string) {
		t.Helper()
		for _, n := range []*redis.Client{nb, na} {
			if err := n.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", to).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The key's slot moves to b, which becomes a master.
	moveSlot(idB)
	rec.await(t, "gap for the new master", func(r *recorder) bool { return r.gaps == 1 })
	if err := nb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	awaitKey(t, rec, key, 1)
	nb.Del(ctx, key)
	awaitKey(t, rec, key, 2)

	// It moves back: b has no slot left, and its connection goes.
	moveSlot(idA)
	rec.await(t, "gap for the master gone", func(r *recorder) bool { return r.gaps == 2 })
	awaitCondition(t, "b's tracking connection closed", func() bool {
		n, err := nb.PubSubNumSub(ctx, "__redis__:invalidate").Result()
		return err == nil && n["__redis__:invalidate"] == 0
	})
	if err := na.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	awaitKey(t, rec, key, 3)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.downs != 0 {
		t.Fatalf("downs=%d, want none: no connection was lost", rec.downs)
	}
}

// clusterBusPort returns the cluster bus port of the node n.
func clusterBusPort(t *testing.T, n *redis.Client) string {
	t.Helper()
	port, err := n.ConfigGet(context.Background(), "cluster-port").Result()
	if err != nil {
		t.Fatal(err)
	}
	return port["cluster-port"]
}

// TestTrackingDeliveryDelay measures how long after a raw SET returns its
// invalidation reaches the handler. It logs the figures and asserts
// nothing about them.
func TestTrackingDeliveryDelay(t *testing.T) {
	const rounds = 1000
	t.Run("single", func(t *testing.T) {
		srv := realServer(t)
		_, rec, prefix := startTracking(t, srv.Client(t), time.Second)
		raw := srv.Client(t)
		cleanupKeys(t, raw, prefix)
		measureDelay(t, rec, rounds, []string{prefix + "k"}, func(key string) error {
			return raw.Set(context.Background(), key, "v", 0).Err()
		})
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.SharedCluster(t)
		_, rec, prefix := startTracking(t, c.Client(t), time.Second)
		raw := c.Client(t)
		keys := slices.Collect(maps.Values(keysPerMaster(t, raw, prefix)))
		measureDelay(t, rec, rounds, keys, func(key string) error {
			return raw.Set(context.Background(), key, "v", 0).Err()
		})
	})
}

func measureDelay(t *testing.T, rec *recorder, rounds int, keys []string, write func(key string) error) {
	t.Helper()
	seen := make(chan time.Time, 1)
	rec.mu.Lock()
	rec.onInvalidate = func(_ []string, at time.Time) {
		select {
		case seen <- at:
		default:
		}
	}
	rec.mu.Unlock()
	delays := make([]time.Duration, 0, rounds)
	trips := make([]time.Duration, 0, rounds)
	for i := range rounds {
		sent := time.Now()
		if err := write(keys[i%len(keys)]); err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		trips = append(trips, returned.Sub(sent))
		select {
		case at := <-seen:
			delays = append(delays, at.Sub(returned))
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d never reported", i)
		}
	}
	slices.Sort(delays)
	slices.Sort(trips)
	pct := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
	t.Logf("SET returned -> Invalidate called, %d writes: min %v p50 %v p99 %v max %v "+
		"(negative: the invalidation came first); the SET itself: p50 %v p99 %v",
		rounds, delays[0], pct(delays, 50), pct(delays, 99), delays[len(delays)-1], pct(trips, 50), pct(trips, 99))
}
