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
//
// Besides time it reports the round trips per fetch (RTs/op: commands and
// pipelines the shared go-redis client sent, counted by a hook) and the
// commands Redis ran per fetch (cmds/op, from INFO commandstats): on a real
// network each round trip costs about 0.5 ms, which loopback hides.
func BenchmarkFetchMiss(b *testing.B) {
	ctx := context.Background()
	rdb := redisClient(b)
	var rts roundTrips
	rdb.AddHook(&rts)
	admin := adminClient(b)
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
			// A key of the same shape as ours, outside the prefix our
			// instance watches: the floor's writes must not cost it
			// invalidations.
			key := peerKey(prefix, "tenant-global:user:"+id+":v1")
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
				Ctx: ctx, Key: peerKey(prefix, id), Value: &u, TTL: missTTL,
				Do: func(it *gcache.Item) (any, error) { return load(it.Ctx, id) },
			})
		}},
	}
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			var to timeouts
			before := cacheStats(client, "user")
			calls, callsOK := redisCalls(admin)
			rts0 := rts.n.Load()
			for b.Loop() {
				if to.failed(b, im.fetch(ids.next("m"))) {
					b.FailNow()
				}
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(rts.n.Load()-rts0)/n, "RTs/op")
			if after, ok := redisCalls(admin); ok && callsOK {
				// Less the INFO that read the first count.
				b.ReportMetric(float64(after-calls-1)/n, "cmds/op")
			}
			to.report(b)
			if im.name == "tiered" && !to.any() {
				s := cacheStats(client, "user")
				if loads := s.Loads - before.Loads; loads != uint64(b.N) {
					b.Fatalf("%d loads for %d misses", loads, b.N)
				}
			}
		})
	}
	// Ours against the floor, paired: blocks of each alternate, so that a
	// change in the machine's load falls on both.
	b.Run("impl=paired", func(b *testing.B) {
		b.ReportAllocs()
		var to timeouts
		ok := func(fetch func(string) error) func() bool {
			return func() bool { return !to.failed(b, fetch(ids.next("m"))) }
		}
		pairedBlocks(b, false, 10, ok(impls[0].fetch), ok(impls[1].fetch))
		to.report(b)
	})
}
