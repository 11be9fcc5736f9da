// Command tiered-demo shows the two-tier cache at work: several instances
// (each standing for a separate process) share one Redis in front of a
// deliberately slow database, and the demo prints what each guard did,
// with real counts.
//
// With no flags it runs an embedded Redis (miniredis), so it needs no
// server. With -redis host:port, or REDIS_ADDR set, it uses that Redis:
// every key it writes there lies under a prefix of its own, deleted at the
// end. That Redis is never stopped: the outage section runs on a
// redis-server the demo starts itself (from PATH) on a free port, and is
// skipped, saying why, when it cannot.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// User is what the fake database stores.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// database is a slow store that counts its queries.
type database struct {
	latency time.Duration
	queries atomic.Int64
	mu      sync.Mutex
	rows    map[string]User
}

func (db *database) user(ctx context.Context, id string) (User, error) {
	db.queries.Add(1)
	select {
	case <-time.After(db.latency):
	case <-ctx.Done():
		return User{}, ctx.Err()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	u, ok := db.rows[id]
	if !ok {
		return User{}, tiered.ErrNotFound
	}
	return u, nil
}

func (db *database) update(u User) {
	db.mu.Lock()
	db.rows[u.ID] = u
	db.mu.Unlock()
}

// instance is one simulated process.
type instance struct {
	name   string
	rdb    *redis.Client
	client *tiered.Client
	users  *tiered.Cache[User]
	get    func(context.Context, string) (User, error)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tiered-demo:", err)
		os.Exit(1)
	}
}

// quietRedis drops go-redis's own log lines (dial failures once Redis is
// stopped); the demo reports what happened itself.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func run() error {
	redis.SetLogger(quietRedis{})
	addr := flag.String("redis", os.Getenv("REDIS_ADDR"), "Redis address (default: an embedded Redis)")
	n := flag.Int("instances", 3, "number of simulated processes")
	callers := flag.Int("callers", 200, "concurrent callers per instance in the stampede")
	latency := flag.Duration("db-latency", 50*time.Millisecond, "latency of the fake database")
	flag.Parse()
	if *n < 2 || *callers < 1 {
		return errors.New("need at least 2 instances and 1 caller")
	}

	where := *addr
	var mr *miniredis.Miniredis
	if where == "" {
		var err error
		if mr, err = miniredis.Run(); err != nil {
			return err
		}
		defer mr.Close()
		where = mr.Addr()
		fmt.Printf("Redis: embedded (miniredis) on %s; pass -redis host:port for a real one\n", where)
	} else {
		fmt.Printf("Redis: %s\n", where)
	}

	db := &database{latency: *latency, rows: map[string]User{
		"uuid-456": {ID: "uuid-456", Email: "ada@example.com"},
		"uuid-999": {ID: "uuid-999", Email: "grace@example.com"},
	}}
	// A prefix of its own, so the demo never touches anyone's keys, and
	// leaves none behind in a Redis it shares.
	prefix := fmt.Sprintf("tiered_demo_%d_%d", os.Getpid(), time.Now().UnixNano())
	kb, err := keys.New(prefix)
	if err != nil {
		return err
	}
	if mr == nil {
		defer removeKeys(where, prefix)
	}
	var fleet []*instance
	defer func() {
		for _, in := range fleet {
			_ = in.client.Close()
			_ = in.rdb.Close()
		}
	}()
	for i := range *n {
		in, err := start(fmt.Sprintf("instance-%c", 'A'+i), where, kb, db)
		if err != nil {
			return err
		}
		fleet = append(fleet, in)
	}
	ctx := context.Background()
	fmt.Printf("Database: %v per query; %d instances sharing one Redis\n\n", *latency, *n)

	// 1. A cold key, requested by every caller of every instance at once.
	fmt.Printf("1. Stampede: %d instances x %d callers ask for a cold key at once\n", *n, *callers)
	lat := stampede(ctx, fleet, *callers, "uuid-456")
	fmt.Printf("   database queries: %d (one load served %d callers)\n", db.queries.Load(), *n**callers)
	fmt.Printf("   caller latency:   p50 %v, p99 %v, max %v\n\n", pct(lat, 50), pct(lat, 99), pct(lat, 100))

	// 2. Reads from each tier.
	fmt.Println("2. Reads after the load")
	before := db.queries.Load()
	a, b := fleet[0], fleet[1]
	for range 1000 {
		if _, err := a.get(ctx, "uuid-456"); err != nil {
			return err
		}
	}
	late, err := start("instance-late", where, kb, db) // a process that starts now
	if err != nil {
		return err
	}
	fleet = append(fleet, late)
	t0 := time.Now()
	u, err := late.get(ctx, "uuid-456")
	if err != nil {
		return err
	}
	l2 := time.Since(t0)
	t0 = time.Now()
	for range 1000 {
		if _, err := a.get(ctx, "uuid-456"); err != nil {
			return err
		}
	}
	l1 := time.Since(t0) / 1000
	sa, sl := stats(a), stats(late)
	fmt.Printf("   %s: %d L1 hits, %v per read, no decoding\n", a.name, sa.HitsL1, l1)
	fmt.Printf("   %s (started after the load): read %s from Redis (L2 hits: %d) in %v\n", late.name, u.Email, sl.HitsL2, l2.Round(time.Microsecond))
	fmt.Printf("   database queries for all of that: %d\n\n", db.queries.Load()-before)

	// 3. A write on one instance invalidates the others.
	fmt.Println("3. Write on one instance, read on the others")
	for _, in := range fleet[1:] {
		waitL1(ctx, in, "uuid-456")
	}
	db.update(User{ID: "uuid-456", Email: "ada.lovelace@example.com"})
	written := time.Now()
	if err := a.users.Set(ctx, "uuid-456", User{ID: "uuid-456", Email: "ada.lovelace@example.com"}); err != nil {
		return err
	}
	setDone := time.Now()
	for _, in := range fleet[1:] {
		for {
			u, err := in.get(ctx, "uuid-456")
			if err != nil {
				return err
			}
			if u.Email == "ada.lovelace@example.com" {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		fmt.Printf("   %s sees the new email %v after Set returned (invalidations received: %d)\n",
			in.name, time.Since(setDone).Round(time.Microsecond), in.client.Stats().InvalidationsReceived)
	}
	fmt.Printf("   Set itself (the value staged, then put in place with its lease cleared, one round trip): %v\n\n", setDone.Sub(written).Round(time.Microsecond))

	// 4. A delete during a slow load: the loaded value is not cached.
	fmt.Println("4. Delete while another instance is loading")
	started := make(chan struct{})
	done := make(chan User, 1)
	go func() {
		u, _ := a.users.Fetch(ctx, "uuid-789", func(ctx context.Context, _ string) (User, error) {
			close(started)
			time.Sleep(*latency)
			return User{ID: "uuid-789", Email: "read-before-the-delete@example.com"}, nil
		})
		done <- u
	}()
	<-started
	if err := b.users.Delete(ctx, "uuid-789"); err != nil {
		return err
	}
	got := <-done
	_, err = a.users.Get(ctx, "uuid-789")
	fmt.Printf("   the loader's caller got %q; afterwards Get says: %v\n", got.Email, err)
	fmt.Printf("   values not cached because a write came first: %d\n\n", stats(a).LeaseLost+stats(a).FillsRefused)

	// 5. A write made outside the library, as the Python service makes it.
	if err := foreignWrite(ctx, fleet, where, kb); err != nil {
		return err
	}

	// 6 and 7. Redis goes away, and comes back.
	return outage(ctx, fleet[0], mr, where, kb, db)
}

func start(name, addr string, kb *keys.Builder, db *database) (*instance, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	client, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, InstanceID: name})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	users, err := tiered.NewCache[User](client, "user")
	if err != nil {
		_ = client.Close()
		_ = rdb.Close()
		return nil, err
	}
	return &instance{name: name, rdb: rdb, client: client, users: users, get: users.Wrap(db.user)}, nil
}

func stampede(ctx context.Context, fleet []*instance, callers int, id string) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, in := range fleet {
		for range callers {
			wg.Go(func() {
				<-gate
				t0 := time.Now()
				if _, err := in.get(ctx, id); err != nil {
					fmt.Fprintln(os.Stderr, "fetch:", err)
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			})
		}
	}
	close(gate)
	wg.Wait()
	slices.Sort(lat)
	return lat
}

// waitL1 reads until the instance serves id in-process.
func waitL1(ctx context.Context, in *instance, id string) {
	for range 1000 {
		before := stats(in).HitsL1
		_, _ = in.get(ctx, id)
		if stats(in).HitsL1 > before {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func stats(in *instance) tiered.CacheStats {
	return in.client.Stats().Caches[0]
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted) - 1) * p / 100
	return sorted[i].Round(100 * time.Microsecond)
}

// foreignWrite replaces a user the way the Python template does (SETEX of
// its JSON, from a client that knows nothing of this library) and shows how
// long the instances keep serving their old copy.
func foreignWrite(ctx context.Context, fleet []*instance, addr string, kb *keys.Builder) error {
	fmt.Println("5. Another service (standing for the Python template) writes with SETEX")
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	key, err := kb.Build(ctx, "user", "uuid-999")
	if err != nil {
		return err
	}
	for _, in := range fleet {
		waitL1(ctx, in, "uuid-999")
	}
	value := `{"id":"uuid-999","email":"grace.hopper@example.com"}`
	// The command the template sends: SETEX key ttl model_dump_json().
	if err := raw.Do(ctx, "SETEX", key, 3600, value).Err(); err != nil {
		return err
	}
	written := time.Now()
	if mode := fleet[0].client.Stats().InvalidationMode; mode != "tracking" {
		fmt.Printf("   invalidation mode: %s: this Redis does not report changes (the embedded one cannot),\n", mode)
		fmt.Println("   so the instances serve their copies until L1TTL; run with -redis host:port against Redis 6+ to see it")
		fmt.Println()
		return nil
	}
	var slowest time.Duration
	for _, in := range fleet {
		for {
			u, err := in.get(ctx, "uuid-999")
			if err != nil {
				return err
			}
			if u.Email == "grace.hopper@example.com" {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		slowest = max(slowest, time.Since(written))
	}
	fmt.Printf("   invalidation mode: tracking (Redis reports every write under %s:)\n", kb.Prefix())
	fmt.Printf("   every instance serves the new email %v after SETEX returned, nothing published by the writer\n\n",
		slowest.Round(time.Microsecond))
	return nil
}
