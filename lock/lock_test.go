package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/lock"
	"github.com/tieredcache/tieredcache/remote"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestLeases(t *testing.T) {
	rdb := redistest.Shared(t).Client(t)
	p := redistest.Prefix(t)
	ctx := context.Background()
	l, err := lock.New(rdb, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, err := remote.NewStore(rdb, remote.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}

	// One loader wins; the others are told a load is under way.
	key := p + ":a"
	le, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, key); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("second Acquire: %v, want ErrHeld", err)
	}
	if err := le.Fill(ctx, []byte("loaded"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, _ := rdb.Get(ctx, key).Result(); v != "loaded" {
		t.Fatalf("after Fill the key holds %q", v)
	}

	// A write during the load fences the fill out.
	key = p + ":b"
	if le, err = l.Acquire(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, key, []byte("written"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := le.Fill(ctx, []byte("older"), time.Minute); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Fill after a write: %v, want ErrLost", err)
	}
	if v, _ := rdb.Get(ctx, key).Result(); v != "written" {
		t.Fatalf("the write was overwritten: %q", v)
	}

	// A writer that takes no lease is never overwritten.
	key = p + ":c"
	if le, err = l.Acquire(ctx, key); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, key, "python", time.Minute)
	if err := le.Fill(ctx, []byte("older"), time.Minute); !errors.Is(err, lock.ErrExists) {
		t.Fatalf("Fill over another writer's value: %v, want ErrExists", err)
	}

	// Release lets the next loader in at once.
	key = p + ":d"
	if le, err = l.Acquire(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := le.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, key); err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
}

func TestTTLIsValidated(t *testing.T) {
	if _, err := lock.New(nil, 0); err == nil {
		t.Error("zero TTL accepted")
	}
}
