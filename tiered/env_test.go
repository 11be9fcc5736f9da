package tiered_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// templateVars are the Python template's cache settings, cleared so that a
// test sees only what it sets.
var templateVars = []string{
	"REDIS_URL", "REDIS_POOL_SIZE", "REDIS_POOL_TIMEOUT", "REDIS_SOCKET_CONNECT_TIMEOUT",
	"REDIS_SOCKET_TIMEOUT", "REDIS_DEFAULT_TTL", "CACHE_KEY_PREFIX", "ENFORCE_TENANT_ISOLATION",
}

func clearTemplateEnv(t *testing.T) {
	for _, v := range templateVars {
		t.Setenv(v, "")
	}
}

func TestNewFromEnv(t *testing.T) {
	srv := redistest.Shared(t)
	clearTemplateEnv(t)
	prefix := redistest.Prefix(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	t.Setenv("CACHE_KEY_PREFIX", prefix)
	t.Setenv("REDIS_DEFAULT_TTL", "120")
	c, err := tiered.NewFromEnv("fastapi_template", tiered.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	users, _ := tiered.NewCache[User](c, "user")
	ctx := context.Background()
	// Isolation is enforced by default, as in the template.
	if err := users.Set(ctx, "1", User{ID: "1"}); !errors.Is(err, keys.ErrTenantRequired) {
		t.Fatalf("Set without a tenant = %v, want ErrTenantRequired", err)
	}
	if err := users.Set(ctx, "1", User{ID: "1"}, tiered.Tenant("org-1")); err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client(t)
	key := prefix + ":tenant-org-1:user:1:v1"
	if ttl := rdb.PTTL(ctx, key).Val(); ttl < 100*time.Second || ttl > 120*time.Second {
		t.Fatalf("PTTL of %s = %v, want REDIS_DEFAULT_TTL", key, ttl)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewFromEnvWithoutRedis(t *testing.T) {
	clearTemplateEnv(t)
	var logs syncBuffer
	c, err := tiered.NewFromEnv("fastapi_template", tiered.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.Contains(logs.String(), "Caching disabled") {
		t.Fatalf("no 'Caching disabled' line: %q", logs.String())
	}
	if c.RedisUp() {
		t.Fatal("RedisUp without REDIS_URL")
	}
}

func TestNewFromEnvRefusesBadValues(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{"REDIS_POOL_SIZE", "ten"},
		{"REDIS_POOL_SIZE", "0"},
		{"REDIS_POOL_TIMEOUT", "-1"},
		{"REDIS_SOCKET_CONNECT_TIMEOUT", "5s"},
		{"REDIS_SOCKET_TIMEOUT", "NaN"},
		{"REDIS_DEFAULT_TTL", "forever"},
		{"ENFORCE_TENANT_ISOLATION", "maybe"},
		{"CACHE_KEY_PREFIX", "a:b"},
		{"REDIS_URL", "http://localhost"},
	} {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			clearTemplateEnv(t)
			t.Setenv(tt.name, tt.value)
			c, err := tiered.NewFromEnv("fastapi_template", tiered.Options{Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("error %q does not name %s", err, tt.name)
			}
		})
	}
	if _, err := tiered.NewFromEnv("app", tiered.Options{TTL: time.Second}); err == nil {
		t.Fatal("NewFromEnv with a TTL of its own accepted")
	}
}
