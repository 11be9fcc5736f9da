package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// The examples run on an embedded Redis (miniredis), which cannot report
// changes to keys: the Client then runs its pub/sub fallback, which is all
// one process needs. They print values and load counts, never which tier
// served a read: the in-process tier admits new keys asynchronously.

// userDB stands for the database; GetUser counts its queries.
type userDB struct{ queries int }

func (db *userDB) GetUser(ctx context.Context, id string) (User, error) {
	db.queries++
	return User{ID: id, Email: "ada@example.com"}, nil
}

// Example is the README's quick start: cache-aside reads with Fetch, whose
// loader runs once however many callers ask, then a write-through Set and a
// Delete. The value in Redis is the JSON the Python template reads.
func Example() {
	mr, err := miniredis.Run() // an embedded Redis for the example; use yours, e.g. localhost:6379
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{
		Addr:                  mr.Addr(),
		ContextTimeoutEnabled: true, // lets the cache's timeouts bound socket reads
	})
	defer rdb.Close()

	kb, _ := keys.New("fastapi_template", keys.EnforceTenantIsolation())
	client, err := tiered.New(tiered.Options{
		Redis:      rdb,
		Keys:       kb,
		Registerer: prometheus.DefaultRegisterer,
		Logger:     slog.New(slog.DiscardHandler), // default: slog.Default()
	})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	users, _ := tiered.NewCache[User](client, "user")

	ctx := keys.WithTenant(context.Background(), "org-123") // usually set by middleware
	db := &userDB{}
	for range 3 {
		u, _ := users.Fetch(ctx, "uuid-456", db.GetUser) // db.GetUser(ctx, id) runs once per key for the whole fleet
		fmt.Println(u.Email)
	}
	fmt.Println("queries:", db.queries)
	fmt.Println(rdb.Get(ctx, "fastapi_template:tenant-org-123:user:uuid-456:v1").Val())

	_ = users.Set(ctx, "uuid-456", User{ID: "uuid-456", Email: "ada@lovelace.example"}) // write-through; other processes drop their copy
	u, _ := users.Get(ctx, "uuid-456")
	fmt.Println(u.Email)

	_ = users.Delete(ctx, "uuid-456") // after an update in the database
	_, err = users.Get(ctx, "uuid-456")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// ada@example.com
	// ada@example.com
	// ada@example.com
	// queries: 1
	// {"id":"uuid-456","email":"ada@example.com"}
	// ada@lovelace.example
	// true
}

// startExample returns a Client on an embedded Redis, with keys prefixed
// "fastapi_template" as the Python template's, and a function that stops
// both. In a service, pass your own Redis client as Example does.
func startExample(opts ...keys.Option) (*tiered.Client, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	kb, err := keys.New("fastapi_template", opts...)
	if err != nil {
		panic(err)
	}
	client, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	return client, func() {
		_ = client.Close()
		_ = rdb.Close()
		mr.Close()
	}
}

// ExampleCache_Fetch shows the stampede guard: a hundred concurrent callers
// of a cold key share one load.
func ExampleCache_Fetch() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")

	var loads atomic.Int64
	slowQuery := func(ctx context.Context, id string) (User, error) {
		loads.Add(1)
		time.Sleep(20 * time.Millisecond) // a slow query: the callers pile up behind it
		return User{ID: id, Email: "ada@example.com"}, nil
	}
	var wg sync.WaitGroup
	var served atomic.Int64
	for range 100 {
		wg.Go(func() {
			if u, err := users.Fetch(context.Background(), "uuid-456", slowQuery); err == nil && u.Email == "ada@example.com" {
				served.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println("served:", served.Load(), "loads:", loads.Load())
	// Output: served: 100 loads: 1
}

// ExampleCache_Wrap caches a loader the way the Python template's @cached
// decorator does.
func ExampleCache_Wrap() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")

	loads := 0
	loadUser := func(ctx context.Context, id string) (User, error) {
		loads++ // stands for a database query
		return User{ID: id, Email: id + "@example.com"}, nil
	}
	getUser := users.Wrap(loadUser, tiered.TTL(30*time.Minute))
	for range 2 {
		u, _ := getUser(context.Background(), "grace")
		fmt.Println(u.Email)
	}
	fmt.Println("loads:", loads)
	// Output:
	// grace@example.com
	// grace@example.com
	// loads: 1
}

// ExampleCache_FetchMany serves a batch the Python template's way: the
// cached values, then one loader call for the rest.
func ExampleCache_FetchMany() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")
	ctx := context.Background()

	loadMissing := func(ctx context.Context, missing []string) (map[string]User, error) {
		fmt.Println("query for", missing) // one query: WHERE id IN (...)
		found := make(map[string]User, len(missing))
		for _, id := range missing {
			if id != "nobody" {
				found[id] = User{ID: id, Email: id + "@example.com"}
			}
		}
		return found, nil
	}
	_ = users.Set(ctx, "ada", User{ID: "ada", Email: "ada@example.com"})
	got, _ := users.FetchMany(ctx, []string{"ada", "grace", "linus"}, loadMissing)
	fmt.Println(slices.Sorted(maps.Keys(got)))

	got, _ = users.FetchMany(ctx, []string{"ada", "grace", "linus", "ken", "nobody"}, loadMissing)
	fmt.Println(slices.Sorted(maps.Keys(got))) // "nobody" is absent: the query found no such row
	// Output:
	// query for [grace linus]
	// [ada grace linus]
	// query for [ken nobody]
	// [ada grace ken linus]
}

// ExampleCache_Warm fills the cache on start-up, so that the first reads
// load nothing.
func ExampleCache_Warm() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")
	ctx := context.Background()

	err := users.Warm(ctx, map[string]User{
		"ada":   {ID: "ada", Email: "ada@example.com"},
		"grace": {ID: "grace", Email: "grace@example.com"},
	})
	fmt.Println("warmed:", err == nil)

	db := &userDB{}
	for _, id := range []string{"ada", "grace"} {
		u, _ := users.Fetch(ctx, id, db.GetUser)
		fmt.Println(u.Email)
	}
	fmt.Println("queries:", db.queries)
	// Output:
	// warmed: true
	// ada@example.com
	// grace@example.com
	// queries: 0
}

// ExampleCache_Set writes through and deletes: after either returns, no
// read in this process returns the older value.
func ExampleCache_Set() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")
	ctx := context.Background()

	_ = users.Set(ctx, "uuid-456", User{ID: "uuid-456", Email: "ada@example.com"})
	u, _ := users.Get(ctx, "uuid-456")
	fmt.Println(u.Email)

	_ = users.Set(ctx, "uuid-456", User{ID: "uuid-456", Email: "ada@lovelace.example"})
	u, _ = users.Get(ctx, "uuid-456")
	fmt.Println(u.Email)

	_ = users.Delete(ctx, "uuid-456") // the template's pattern: update the database, then delete
	_, err := users.Get(ctx, "uuid-456")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// ada@example.com
	// ada@lovelace.example
	// true
}

// ExampleCache_Get_tenant keeps tenants apart by key, and with tenant
// isolation enforced refuses a call that names no tenant.
func ExampleCache_Get_tenant() {
	client, stop := startExample(keys.EnforceTenantIsolation())
	defer stop()
	settings, _ := tiered.NewCache[string](client, "settings")

	orgA := keys.WithTenant(context.Background(), "org-a")
	_ = settings.Set(orgA, "theme", "dark")
	k, _ := settings.Key(orgA, "theme")
	fmt.Println(k)
	v, _ := settings.Get(orgA, "theme")
	fmt.Println("org-a:", v)

	_, err := settings.Get(keys.WithTenant(context.Background(), "org-b"), "theme")
	fmt.Println("org-b not found:", errors.Is(err, tiered.ErrNotFound))

	_, err = settings.Get(context.Background(), "theme")
	fmt.Println("no tenant:", errors.Is(err, keys.ErrTenantRequired))

	v, _ = settings.Get(context.Background(), "theme", tiered.Tenant("org-a")) // a tenant per call
	fmt.Println("org-a:", v)
	// Output:
	// fastapi_template:tenant-org-a:settings:theme:v1
	// org-a: dark
	// org-b not found: true
	// no tenant: true
	// org-a: dark
}

// ExampleReload is the template's conditional caching: a Fetch with
// Reload skips the cache, loads, and stores what it loaded.
func ExampleReload() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")
	ctx := context.Background()

	email, loads := "ada@example.com", 0 // the database's row
	load := func(ctx context.Context, id string) (User, error) {
		loads++
		return User{ID: id, Email: email}, nil
	}
	u, _ := users.Fetch(ctx, "uuid-456", load)
	fmt.Println(u.Email)

	email = "ada@lovelace.example" // changed behind the cache's back
	u, _ = users.Fetch(ctx, "uuid-456", load)
	fmt.Println(u.Email, "(cached)")

	u, _ = users.Fetch(ctx, "uuid-456", load, tiered.Reload())
	fmt.Println(u.Email, "(refreshed)")

	u, _ = users.Fetch(ctx, "uuid-456", load)
	fmt.Println(u.Email, "loads:", loads)
	// Output:
	// ada@example.com
	// ada@example.com (cached)
	// ada@lovelace.example (refreshed)
	// ada@lovelace.example loads: 2
}

// Example_errors tells errors apart with errors.Is: a miss, and a loader
// that panicked (every caller sharing the load gets the error; the process
// lives).
func Example_errors() {
	client, stop := startExample()
	defer stop()
	users, _ := tiered.NewCache[User](client, "user")
	ctx := context.Background()

	_, err := users.Get(ctx, "nobody")
	fmt.Println("not found:", errors.Is(err, tiered.ErrNotFound))

	_, err = users.Fetch(ctx, "uuid-456", func(ctx context.Context, id string) (User, error) {
		panic("driver bug")
	})
	fmt.Println("loader panicked:", errors.Is(err, tiered.ErrLoaderPanic))
	if pe, ok := errors.AsType[*tiered.PanicError](err); ok {
		fmt.Println("panic value:", pe.Value)
	}
	// Output:
	// not found: true
	// loader panicked: true
	// panic value: driver bug
}
