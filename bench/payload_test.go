package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// TTL jitter shape: jitterKeys values warmed at once with a TTL of
// jitterTTL.
const (
	jitterKeys = 100000
	jitterTTL  = 60 * time.Second
)

// BenchmarkTTLJitter warms jitterKeys values with Cache.Warm, reads every
// key's PTTL back (pipelined) and reports how many would expire in the
// busiest second, with the default TTLJitter (0.1) and with none. Nothing
// waits for the expiry itself.
func BenchmarkTTLJitter(b *testing.B) {
	n := jitterKeys
	if v, err := strconv.Atoi(os.Getenv("BENCH_JITTER_KEYS")); err == nil && v > 0 {
		n = v
	}
	prefix := redistest.Prefix(b)
	for _, s := range []struct {
		name   string
		jitter float64
	}{{"default", 0}, {"off", -1}} {
		b.Run("jitter="+s.name, func(b *testing.B) {
			rdb := redisClient(b)
			kp := prefix + "-" + s.name
			c := newTiered(b, rdb, kp, "jitter", func(o *tiered.Options) { o.TTLJitter = s.jitter })
			users := newUsers(b, c, tiered.NoL1(), tiered.TTL(jitterTTL))
			kb, err := keys.New(kp)
			check(b, err)
			ctx := context.Background()
			var busiest, spanned int
			var warmTook time.Duration
			round := 0
			for b.Loop() {
				round++
				values := make(map[string]User, n)
				names := make([]string, 0, n)
				for i := range n {
					id := "j" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
					values[id] = makeUser(id)
					k, err := kb.Build(ctx, "user", id)
					check(b, err)
					names = append(names, k)
				}
				t0 := time.Now()
				check(b, users.Warm(ctx, values))
				warmTook = time.Since(t0)
				// When each key expires, in whole seconds after the warm-up began.
				buckets := map[int64]int{}
				const batch = 1000
				for lo := 0; lo < len(names); lo += batch {
					pipe := rdb.Pipeline()
					cmds := make([]*redis.DurationCmd, 0, batch)
					for _, k := range names[lo:min(lo+batch, len(names))] {
						cmds = append(cmds, pipe.PTTL(ctx, k))
					}
					_, err := pipe.Exec(ctx)
					check(b, err)
					at := time.Since(t0)
					for _, cmd := range cmds {
						left := cmd.Val()
						if left <= 0 {
							b.Fatalf("a warmed key has no TTL (%v)", left)
						}
						buckets[int64((at+left)/time.Second)]++
					}
				}
				busiest, spanned = 0, len(buckets)
				for _, v := range buckets {
					busiest = max(busiest, v)
				}
				// Leave Redis as it was.
				for lo := 0; lo < len(names); lo += batch {
					check(b, rdb.Unlink(ctx, names[lo:min(lo+batch, len(names))]...).Err())
				}
			}
			b.ReportMetric(float64(n), "keys")
			b.ReportMetric(float64(busiest), "busiest-second-keys")
			b.ReportMetric(100*float64(busiest)/float64(n), "busiest-second-%")
			b.ReportMetric(float64(spanned), "seconds-spanned")
			b.ReportMetric(ms(warmTook), "warm-ms")
		})
	}
}

// payloadKey is the 32-byte AES-256 key of the encrypted payloads.
var payloadKey = []byte("0123456789abcdef0123456789abcdef")

// payloadNames, the names the payload users take in turn.
var payloadNames = []string{"Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra",
	"Barbara Liskov", "Donald Knuth", "Margaret Hamilton", "Ken Thompson", "Frances Allen", "John Backus"}

// payloadUsers returns a list of users whose JSON is about size bytes.
func payloadUsers(size int) []User {
	one, _ := json.Marshal(makeUser("user-000000"))
	n := max(1, size/(len(one)+1))
	out := make([]User, n)
	for i := range out {
		id := fmt.Sprintf("user-%06d", i)
		u := makeUser(id)
		u.Name = payloadNames[i%len(payloadNames)]
		u.OrgID = "org-" + strconv.Itoa(i%37)
		u.Active = i%5 != 0
		u.CreatedAt = created.Add(time.Duration(i) * 7919 * time.Second)
		if i%3 == 0 {
			u.Roles = []string{"member"}
		}
		out[i] = u
	}
	return out
}

// BenchmarkPayload stores and reads a list of users of about 10 KiB and
// 1 MiB of JSON through Cache.Set and Cache.Get (no in-process tier, so
// every Get reads Redis and decodes), plain and with Compress and Encrypt,
// beside a bare go-redis SET / GET of json.Marshal's output (redis-json).
// Throughput (MB/s) is of the plain JSON's size; stored-B is the value's
// STRLEN in Redis.
func BenchmarkPayload(b *testing.B) {
	prefix := redistest.Prefix(b)
	encKeys := map[string][]byte{"k1": payloadKey}
	impls := []struct {
		name string
		opts []tiered.Option
	}{
		{"redis-json", nil},
		{"plain", nil},
		{"s2", []tiered.Option{tiered.Compress("s2", 0)}},
		{"zstd", []tiered.Option{tiered.Compress("zstd", 0)}},
		{"aes-gcm", []tiered.Option{tiered.Encrypt("k1", encKeys)}},
		{"s2+aes-gcm", []tiered.Option{tiered.Compress("s2", 0), tiered.Encrypt("k1", encKeys)}},
	}
	for _, size := range []struct {
		name  string
		bytes int
	}{{"10KiB", 10 << 10}, {"1MiB", 1 << 20}} {
		v := payloadUsers(size.bytes)
		enc, err := json.Marshal(v)
		check(b, err)
		for _, op := range []string{"set", "get"} {
			for _, im := range impls {
				b.Run("size="+size.name+"/op="+op+"/impl="+im.name, func(b *testing.B) {
					rdb := redisClient(b)
					ctx := context.Background()
					kp := prefix + "-" + im.name
					id := "list-" + size.name
					var set func() error
					var get func() error
					var key string
					if im.name == "redis-json" {
						key = peerKey(kp, id)
						set = func() error {
							e, err := json.Marshal(v)
							if err != nil {
								return err
							}
							return rdb.Set(ctx, key, e, benchTTL).Err()
						}
						get = func() error {
							e, err := rdb.Get(ctx, key).Bytes()
							if err != nil {
								return err
							}
							var out []User
							return json.Unmarshal(e, &out)
						}
					} else {
						c := newTiered(b, rdb, kp, "payload", func(o *tiered.Options) { o.MaxValueBytes = 8 << 20 })
						lists, err := tiered.NewCache[[]User](c, "userlist", append([]tiered.Option{tiered.NoL1()}, im.opts...)...)
						check(b, err)
						kb, err := keys.New(kp)
						check(b, err)
						key, err = kb.Build(ctx, "userlist", id)
						check(b, err)
						set = func() error { return lists.Set(ctx, id, v) }
						get = func() error {
							out, err := lists.Get(ctx, id)
							if err == nil && len(out) != len(v) {
								err = fmt.Errorf("read %d users, stored %d", len(out), len(v))
							}
							return err
						}
					}
					check(b, set())
					stored, err := rdb.StrLen(ctx, key).Result()
					check(b, err)
					f := set
					if op == "get" {
						f = get
					}
					var to timeouts
					b.SetBytes(int64(len(enc)))
					for b.Loop() {
						if to.failed(b, f()) {
							return
						}
					}
					to.report(b)
					b.ReportMetric(float64(stored), "stored-B")
					b.ReportMetric(float64(stored)/float64(len(enc)), "stored/json")
				})
			}
		}
	}
}
