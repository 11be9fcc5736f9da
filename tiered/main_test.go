package tiered_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

// env is a Client on the shared test Redis with a prefix of its own.
type env struct {
	client *tiered.Client
	users  *tiered.Cache[User]
	rdb    *redis.Client
	kb     *keys.Builder
	logs   *syncBuffer
}

func newEnv(t *testing.T, opts tiered.Options, copts ...tiered.Option) *env {
	t.Helper()
	srv := redistest.Shared(t)
	e := &env{rdb: srv.Client(t), logs: &syncBuffer{}}
	if opts.Keys == nil {
		kb, err := keys.New(redistest.Prefix(t))
		if err != nil {
			t.Fatal(err)
		}
		opts.Keys = kb
	}
	e.kb = opts.Keys
	if opts.Redis == nil {
		opts.Redis = e.rdb
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.OpTimeout == 0 {
		// Generous: these tests are not about timeouts (faults_test.go is),
		// and must pass on a loaded machine under the race detector.
		opts.OpTimeout = 2 * time.Second
	}
	c, err := tiered.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e.client = c
	e.users, err = tiered.NewCache[User](c, "user", copts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) key(t *testing.T, ctx context.Context, id string, parts ...keys.Part) string {
	t.Helper()
	k, err := e.kb.Build(ctx, "user", id, parts...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// l1Only returns a Client without Redis.
func l1Only(t *testing.T) (*tiered.Client, *tiered.Cache[User]) {
	t.Helper()
	c, err := tiered.New(tiered.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	users, err := tiered.NewCache[User](c, "user")
	if err != nil {
		t.Fatal(err)
	}
	return c, users
}

// eventually polls cond until it returns nil or within passes, and fails
// the test with cond's last error. It is for what a test can observe but
// not synchronise with: a pub/sub delivery to another Client, Redis coming
// back, ristretto applying an install.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", within, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// awaitEmail reads id until users serves a value with email: what another
// Client's write, once its invalidation arrives, must lead to.
func awaitEmail(t *testing.T, users *tiered.Cache[User], ctx context.Context, id, email, after string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if u, err := users.Get(ctx, id); err != nil || u.Email != email {
			return fmt.Errorf("serves %+v, %v after %s; want email %q", u, err, after, email)
		}
		return nil
	})
}

// awaitL1 reads id until the in-process tier serves it: a new key's install
// into ristretto is applied asynchronously.
func awaitL1(t *testing.T, c *tiered.Client, users *tiered.Cache[User], ctx context.Context, id string, opts ...tiered.Option) User {
	t.Helper()
	var u User
	eventually(t, 2*time.Second, func() error {
		before := cacheStats(c, "user").HitsL1
		var err error
		if u, err = users.Get(ctx, id, opts...); err == nil && cacheStats(c, "user").HitsL1 > before {
			return nil
		}
		return fmt.Errorf("%s never served from L1 (last: %+v, %v)", id, u, err)
	})
	return u
}

func cacheStats(c *tiered.Client, resource string) tiered.CacheStats {
	for _, cs := range c.Stats().Caches {
		if cs.Resource == resource {
			return cs
		}
	}
	return tiered.CacheStats{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.b.String(), sub)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
