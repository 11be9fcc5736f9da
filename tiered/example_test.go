package tiered_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// Example shows the cache-aside read with an embedded Redis: the first
// Fetch loads, the second is served from the cache.
func Example() {
	mr, err := miniredis.Run() // an embedded Redis; use your own in production
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()

	kb, _ := keys.New("fastapi_template")
	client, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	users, _ := tiered.NewCache[User](client, "user")

	ctx := context.Background()
	loads := 0
	load := func(ctx context.Context, _ string) (User, error) {
		loads++ // stands for a database query
		return User{ID: "uuid-456", Email: "ada@example.com"}, nil
	}
	for range 3 {
		u, _ := users.Fetch(ctx, "uuid-456", load)
		fmt.Println(u.Email)
	}
	fmt.Println("loads:", loads)
	raw, _ := rdb.Get(ctx, "fastapi_template:tenant-global:user:uuid-456:v1").Result()
	fmt.Println(raw)
	// Output:
	// ada@example.com
	// ada@example.com
	// ada@example.com
	// loads: 1
	// {"id":"uuid-456","email":"ada@example.com"}
}

// ExampleCache_Wrap caches a loader the way the Python template's @cached
// decorator does.
func ExampleCache_Wrap() {
	client, _ := tiered.New(tiered.Options{}) // L1-only: no Redis
	defer client.Close()
	users, _ := tiered.NewCache[User](client, "user")

	getUser := users.Wrap(func(ctx context.Context, id string) (User, error) {
		return User{ID: id, Email: id + "@example.com"}, nil
	})
	u, _ := getUser(context.Background(), "grace")
	fmt.Println(u.Email)
	// Output: grace@example.com
}

// ExampleCache_Get_tenant keeps tenants apart by key.
func ExampleCache_Get_tenant() {
	kb, _ := keys.New("fastapi_template", keys.EnforceTenantIsolation())
	client, _ := tiered.New(tiered.Options{Keys: kb})
	defer client.Close()
	settings, _ := tiered.NewCache[string](client, "settings")

	orgA := keys.WithTenant(context.Background(), "org-a")
	_ = settings.Set(orgA, "theme", "dark")
	k, _ := settings.Key(orgA, "theme")
	fmt.Println(k)

	_, err := settings.Get(context.Background(), "theme")
	fmt.Println(err)
	// Output:
	// fastapi_template:tenant-org-a:settings:theme:v1
	// keys: tenant required: tenant isolation is enforced and no tenant was given
}
