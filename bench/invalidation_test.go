package bench

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// BenchmarkInvalidation measures how long another instance keeps serving
// its in-process copy after Delete returns on one instance: instance B
// holds the key in L1, A deletes it, and B reads in a loop (pollGap apart)
// until a read no longer returns the copy. The latency is from the moment Delete returned
// to the start of B's first read that found no copy (zero when the
// message beat Delete's reply). Since Redis no longer holds the key, any
// value B returns after Delete returned is its stale L1 copy.
//
// The floor is a bare go-redis PUBLISH of a message of the same size to a
// subscriber on another connection, reading with ReceiveMessage on its own
// goroutine: the time from PUBLISH returning (from-return), and from PUBLISH
// being called (from-call), until the publisher sees the message arrived,
// polling as B polls (redis-pubsub, the floor), or until the time the
// receiver stamped on it (redis-pubsub-direct: no polling resolution).
func BenchmarkInvalidation(b *testing.B) {
	b.Run("impl=tiered", benchInvalidationTiered)
	b.Run("impl=redis-pubsub", func(b *testing.B) { benchInvalidationPubSub(b, false) })
	b.Run("impl=redis-pubsub-direct", func(b *testing.B) { benchInvalidationPubSub(b, true) })
}

// pollGap is how long B sleeps between reads. A reader that spins takes a
// whole core, and on a 2-core machine that also runs Redis it starves the
// goroutine that receives the invalidation (p50 grows from tens to
// hundreds of µs). A 1µs sleep yields the CPU; the timer makes the gap
// about 30µs in practice, the resolution of this measurement (it can only
// overstate the latency).
const pollGap = time.Microsecond

func benchInvalidationTiered(b *testing.B) {
	ctx := context.Background()
	prefix := redistest.Prefix(b)
	ca := newTiered(b, redisClient(b), prefix, "inval-a")
	cb := newTiered(b, redisClient(b), prefix, "inval-b")
	ua, ub := newUsers(b, ca), newUsers(b, cb)
	const id = "uuid-456"
	user := makeUser(id)
	received := func() uint64 { return cb.Stats().InvalidationsReceived }

	var fromReturn, fromCall []time.Duration
	var to timeouts // a round whose Set or Delete timed out is skipped
	polls := 0
	for b.Loop() {
		// Put the value in Redis and in B's L1, with A's Set invalidation
		// already delivered to B so that it cannot drop B's copy later.
		r0 := received()
		if err := ua.Set(ctx, id, user); err != nil {
			if to.failed(b, err) {
				b.FailNow()
			}
			continue
		}
		waitFor(b, "the Set invalidation", 5*time.Second, func() bool { return received() > r0 })
		warmL1(b, cb, ub, id)

		r1 := received()
		called := time.Now()
		if err := ua.Delete(ctx, id); err != nil {
			if to.failed(b, err) {
				b.FailNow()
			}
			continue
		}
		returned := time.Now()
		var gone time.Time
		for {
			t := time.Now()
			polls++
			_, err := ub.Get(ctx, id)
			if errors.Is(err, tiered.ErrNotFound) {
				gone = t
				break
			}
			if to.failed(b, err) {
				b.FailNow()
			}
			time.Sleep(pollGap)
			if t.Sub(returned) > 5*time.Second {
				b.Fatal("B still serves its copy 5s after Delete returned")
			}
		}
		fromReturn = append(fromReturn, max(0, gone.Sub(returned)))
		fromCall = append(fromCall, gone.Sub(called))
		// The delete's own message must have been the one that dropped
		// the copy; wait for it so that the next round starts clean.
		waitFor(b, "the Delete invalidation", 5*time.Second, func() bool { return received() > r1 })
	}
	b.ReportMetric(us(percentile(fromReturn, 0.50)), "p50-us")
	b.ReportMetric(us(percentile(fromReturn, 0.99)), "p99-us")
	b.ReportMetric(us(percentile(fromCall, 0.50)), "call-p50-us")
	b.ReportMetric(us(percentile(fromCall, 0.99)), "call-p99-us")
	b.ReportMetric(float64(polls)/float64(b.N), "polls/op")
	to.report(b)
}

func benchInvalidationPubSub(b *testing.B, direct bool) {
	ctx := context.Background()
	pub, sub := redisClient(b), redisClient(b)
	channel := redistest.Prefix(b) + ":invalidate"
	ps := sub.Subscribe(ctx, channel)
	b.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		b.Fatal(err)
	}
	// A payload the size of the library's invalidation message.
	msg := `{"origin":"inval-a","kind":"invalidate","keys":["` + realKey + strings.Repeat("x", 20) + `"]}`

	got := make(chan time.Time, 1) // arrival times, stamped by the receiver
	var seen atomic.Uint64         // messages received
	go func() {
		for {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				return
			}
			seen.Add(1)
			if direct {
				got <- time.Now()
			}
		}
	}()

	var fromReturn, fromCall []time.Duration
	for b.Loop() {
		before := seen.Load()
		called := time.Now()
		check(b, pub.Publish(ctx, channel, msg).Err())
		returned := time.Now()
		var at time.Time
		if direct {
			select {
			case at = <-got:
			case <-time.After(5 * time.Second):
				b.Fatal("message lost")
			}
		} else {
			// Observe it as ours is observed: polls pollGap apart.
			for {
				t := time.Now()
				if seen.Load() > before {
					at = t
					break
				}
				if t.Sub(returned) > 5*time.Second {
					b.Fatal("message lost")
				}
				time.Sleep(pollGap)
			}
		}
		fromReturn = append(fromReturn, max(0, at.Sub(returned)))
		fromCall = append(fromCall, at.Sub(called))
	}
	b.ReportMetric(us(percentile(fromReturn, 0.50)), "p50-us")
	b.ReportMetric(us(percentile(fromReturn, 0.99)), "p99-us")
	b.ReportMetric(us(percentile(fromCall, 0.50)), "call-p50-us")
	b.ReportMetric(us(percentile(fromCall, 0.99)), "call-p99-us")
}
