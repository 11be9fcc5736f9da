package tiered_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/local"
	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// TestLeasesFreedWhenTheCallerLeaves cancels a FetchMany's caller while
// its loader runs, and closes a Client under a running Fetch: neither may
// leave a lease behind, or other processes would wait on it for LeaseTTL.
func TestLeasesFreedWhenTheCallerLeaves(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	_, _ = e.users.FetchMany(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]User, error) {
		cancel()
		return nil, context.Canceled
	})
	for _, id := range []string{"a", "b"} {
		if n := e.rdb.Exists(context.Background(), "{"+e.key(t, context.Background(), id)+"}:lease").Val(); n != 0 {
			t.Fatalf("lease of %s left behind by a cancelled FetchMany", id)
		}
	}

	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.users.Fetch(context.Background(), "c", func(ctx context.Context, _ string) (User, error) {
			close(started)
			<-ctx.Done()
			return User{}, ctx.Err()
		})
	}()
	<-started
	if err := e.client.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if n := e.rdb.Exists(context.Background(), "{"+e.key(t, context.Background(), "c")+"}:lease").Val(); n != 0 {
		t.Fatal("lease left behind by a load that Close cancelled")
	}
}

func TestCancelledWriteIsNotAnOutage(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := e.users.Set(ctx, "1", User{ID: "1"})
	if !errors.Is(err, context.Canceled) || errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Set with a cancelled context = %v", err)
	}
	if err := e.users.Delete(ctx, "1"); !errors.Is(err, context.Canceled) || errors.Is(err, tiered.ErrUnavailable) {
		t.Fatalf("Delete with a cancelled context = %v", err)
	}
	if _, err := e.users.FetchMany(ctx, []string{"2"}, func(context.Context, []string) (map[string]User, error) {
		t.Error("loader ran for a caller that had left")
		return nil, nil
	}); !errors.Is(err, context.Canceled) {
		t.Fatalf("FetchMany with a cancelled context = %v", err)
	}
	if n := e.client.Stats().RedisErrors; n != 0 {
		t.Fatalf("RedisErrors = %d after cancellations", n)
	}
}

// TestReplayKeepsItsPace writes to a Redis that answers every write with
// an error (NOREPLICAS): the breaker stays closed, every Set fails, and the
// replay of their invalidations must back off rather than resend them all
// after each failure.
func TestReplayKeepsItsPace(t *testing.T) {
	srv := redistest.Private(t, "--min-replicas-to-write", "1")
	rdb := srv.Client(t)
	kb, _ := keys.New(redistest.Prefix(t))
	c, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	start := time.Now()
	const writes = 300
	for i := range writes {
		if err := users.Set(ctx, fmt.Sprint(i%50), User{}); err == nil {
			t.Fatal("a write succeeded on a Redis that refuses writes")
		}
	}
	// DELs Redis saw; refused ones count as rejected_calls, not calls.
	delsSeen := func() int {
		dels := 0
		for _, line := range strings.Split(rdb.Info(ctx, "commandstats").Val(), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_del:"); ok {
				for _, f := range strings.Split(rest, ",") {
					if v, ok := strings.CutPrefix(f, "rejected_calls="); ok {
						n, _ := strconv.Atoi(v)
						dels += n
					} else if v, ok := strings.CutPrefix(f, "calls="); ok {
						n, _ := strconv.Atoi(v)
						dels += n
					}
				}
			}
		}
		return dels
	}
	eventually(t, 5*time.Second, func() error {
		if delsSeen() == 0 {
			return errors.New("no replay reached Redis")
		}
		return nil
	})
	dels, took := delsSeen(), time.Since(start)
	// At most one round per backoff step (100 ms, doubling), each sending
	// every pending key: 50 of them.
	rounds := dels / 50
	if maxRounds := int(took/(100*time.Millisecond)) + 2; rounds > maxRounds {
		t.Fatalf("%d replay rounds (%d DELs) in %v, want at most %d", rounds, dels, took, maxRounds)
	}
	if st := c.Stats(); st.BreakerOpen || st.PendingInvalidations != 50 {
		t.Fatalf("stats = %+v", st)
	}
	t.Logf("%d failed writes in %v: %d replay rounds", writes, took, rounds)
}

// TestScrapeWhileClientsStart gathers metrics while Clients are being made
// on the same registry: under -race, a scrape must not see a half-built
// Client.
func TestScrapeWhileClientsStart(t *testing.T) {
	srv := redistest.Shared(t)
	reg := prometheus.NewRegistry()
	kb, _ := keys.New(redistest.Prefix(t))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if _, err := reg.Gather(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	for range 5 {
		rdb := redis.NewClient(srv.Options())
		c, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		_ = rdb.Close()
	}
	close(stop)
	wg.Wait()
}

// TestFetchManyRefreshKeepsEveryKey refreshes more keys than there are
// stripes, so many share one: every refreshed value must be served
// in-process afterwards.
func TestFetchManyRefreshKeepsEveryKey(t *testing.T) {
	// With Redis tracking, the refresh's own writes come back as
	// invalidations and drop the copies: this is about the pub/sub mode.
	e := newEnv(t, tiered.Options{PubSubOnly: true})
	ctx := context.Background()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	if _, err := e.users.FetchMany(ctx, ids, func(ctx context.Context, missing []string) (map[string]User, error) {
		out := make(map[string]User, len(missing))
		for _, id := range missing {
			out[id] = User{ID: id}
		}
		return out, nil
	}, tiered.Reload()); err != nil {
		t.Fatal(err)
	}
	// ristretto applies installs asynchronously: wait until it accounts
	// for exactly the thousand entries, then every read must hit.
	var want int64
	for _, id := range ids {
		v, _ := json.Marshal(User{ID: id})
		want += int64(len(v) + len(e.key(t, ctx, id)) + entryOverhead(t))
	}
	eventually(t, 5*time.Second, func() error {
		if got := e.client.Stats().L1Bytes; got < want {
			return fmt.Errorf("L1 holds %d bytes, want %d: refreshed values were not kept", got, want)
		}
		return nil
	})
	before := cacheStats(e.client, "user")
	for _, id := range ids {
		if _, err := e.users.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if after := cacheStats(e.client, "user"); after.HitsL1-before.HitsL1 != uint64(len(ids)) {
		t.Fatalf("%d of %d refreshed ids served in-process", after.HitsL1-before.HitsL1, len(ids))
	}
}

// entryOverhead measures what the in-process tier accounts to one entry
// beyond its key and value.
func entryOverhead(t *testing.T) int {
	c, err := local.New[[]byte](local.Config{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.HashString("k")
	c.Install(h, "k", nil, 0, 0, c.Stamp(h))
	c.Wait()
	return int(c.Cost()) - len("k")
}
