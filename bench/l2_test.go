package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	gcache "github.com/go-redis/cache/v9"

	"github.com/tieredcache/tieredcache/tiered"
)

// BenchmarkL2Hit reads one key from Redis with the in-process tier skipped.
// The floor is a bare go-redis GET and json.Unmarshal of the same bytes.
func BenchmarkL2Hit(b *testing.B) {
	ctx := context.Background()
	user := makeUser(realID)
	rdb := redisClient(b)

	client := newTiered(b, rdb, realPrefix, "l2-a")
	users := newUsers(b, client, tiered.NoL1())
	check(b, users.Set(ctx, realID, user))
	b.Cleanup(func() { _ = users.Delete(context.Background(), realID) })
	raw, err := rdb.Get(ctx, realKey).Bytes()
	check(b, err)

	// go-redis/cache without a local cache, with its default codec
	// (msgpack, s2-compressed above 64 bytes) and with JSON like ours.
	grc := gcache.New(&gcache.Options{Redis: rdb})
	grcJSON := gcache.New(&gcache.Options{Redis: rdb, Marshal: json.Marshal, Unmarshal: json.Unmarshal})
	const grcKey, grcJSONKey = realKey + ":grc", realKey + ":grcjson"
	check(b, grc.Set(&gcache.Item{Ctx: ctx, Key: grcKey, Value: user, TTL: time.Hour}))
	check(b, grcJSON.Set(&gcache.Item{Ctx: ctx, Key: grcJSONKey, Value: user, TTL: time.Hour}))
	b.Cleanup(func() { rdb.Del(context.Background(), grcKey, grcJSONKey) })
	b.Logf("value: %d bytes of JSON", len(raw))

	impls := []struct {
		name string
		get  func() error
	}{
		{"redis-get-json", func() error {
			data, err := rdb.Get(ctx, realKey).Bytes()
			if err != nil {
				return err
			}
			var u User
			return json.Unmarshal(data, &u)
		}},
		{"tiered", func() error { _, err := users.Get(ctx, realID); return err }},
		{"go-redis-cache", func() error { var u User; return grc.Get(ctx, grcKey, &u) }},
		{"go-redis-cache-json", func() error { var u User; return grcJSON.Get(ctx, grcJSONKey, &u) }},
	}
	before := cacheStats(client, "user")
	timedOut := false // a timed-out read may count as a miss
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			var to timeouts
			for b.Loop() {
				if to.failed(b, im.get()) {
					b.FailNow()
				}
			}
			to.report(b)
			timedOut = timedOut || to.any()
		})
	}
	b.Run("impl=paired", func(b *testing.B) {
		b.ReportAllocs()
		var to timeouts
		ok := func(get func() error) func() bool {
			// A timed-out call counts in its side's time: see "timeouts".
			return func() bool { return !to.failed(b, get()) }
		}
		pairedBlocks(b, false, 10, ok(impls[0].get), ok(impls[1].get))
		to.report(b)
		timedOut = timedOut || to.any()
	})
	if s := cacheStats(client, "user"); s.HitsL1 != before.HitsL1 || s.Misses != before.Misses && !timedOut {
		b.Fatalf("tiered reads were not L2 hits: before %+v, after %+v", before, s)
	}
}
