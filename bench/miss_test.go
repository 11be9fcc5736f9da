package bench

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	gcache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// missTTL keeps the keys this scenario writes, one per iteration, from
// piling up in Redis.
const missTTL = 30 * time.Second

// BenchmarkFetchMiss fetches a key that is in neither tier, with a loader
// that answers at once: what the read-through path costs beyond the
// loader. Every iteration uses a fresh id. The floor is the plain
// cache-aside of a bare client: GET (a miss), then SET with a TTL.
func BenchmarkFetchMiss(b *testing.B) {
	ctx := context.Background()
	rdb := redisClient(b)
	prefix := redistest.Prefix(b)
	client := newTiered(b, rdb, prefix, "miss-a")
	users := newUsers(b, client, tiered.TTL(missTTL))
	grc := gcache.New(&gcache.Options{Redis: rdb})
	load := func(ctx context.Context, id string) (User, error) { return makeUser(id), nil }
	fetch := users.Wrap(load)

	var ids seq
	impls := []struct {
		name  string
		fetch func(id string) error
	}{
		{"redis-get-set", func(id string) error {
			key := prefix + ":tenant-global:user:" + id + ":v1"
			data, err := rdb.Get(ctx, key).Bytes()
			switch {
			case err == nil:
				var u User
				return json.Unmarshal(data, &u)
			case !errors.Is(err, redis.Nil):
				return err
			}
			u, err := load(ctx, id)
			if err != nil {
				return err
			}
			if data, err = json.Marshal(u); err != nil {
				return err
			}
			return rdb.Set(ctx, key, data, missTTL).Err()
		}},
		{"tiered", func(id string) error { _, err := fetch(ctx, id); return err }},
		{"go-redis-cache", func(id string) error {
			var u User
			return grc.Once(&gcache.Item{
				Ctx: ctx, Key: prefix + ":grc:" + id, Value: &u, TTL: missTTL,
				Do: func(it *gcache.Item) (any, error) { return load(it.Ctx, id) },
			})
		}},
	}
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			before := cacheStats(client, "user")
			for b.Loop() {
				if err := im.fetch(ids.next("m")); err != nil {
					b.Fatal(err)
				}
			}
			if im.name == "tiered" {
				s := cacheStats(client, "user")
				if loads := s.Loads - before.Loads; loads != uint64(b.N) {
					b.Fatalf("%d loads for %d misses", loads, b.N)
				}
			}
		})
	}
}
