package tiered_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/tiered"
)

// refetchPair returns two Clients on one Redis and one prefix, both with
// RefetchInvalidated.
func refetchPair(t *testing.T) (writer, reader *env) {
	t.Helper()
	writer = newEnv(t, tiered.Options{RefetchInvalidated: true})
	reader = newEnv(t, tiered.Options{RefetchInvalidated: true, Keys: writer.kb})
	return writer, reader
}

// TestRefetchKeepsAKeyInUseInProcess: a key another process writes, which
// this one had served from its in-process tier, is read again at once, so
// the next read hits in-process and sees the write.
func TestRefetchKeepsAKeyInUseInProcess(t *testing.T) {
	ctx := context.Background()
	writer, reader := refetchPair(t)
	if err := writer.users.Set(ctx, "1", User{ID: "1", Email: "v1"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, reader.client, reader.users, ctx, "1") // served in-process: in use

	if err := writer.users.Set(ctx, "1", User{ID: "1", Email: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if n := cacheStats(reader.client, "user").Refetches; n != 1 {
			return fmt.Errorf("%d refetches, want 1", n)
		}
		return nil
	})
	before := cacheStats(reader.client, "user")
	u, err := reader.users.Get(ctx, "1")
	after := cacheStats(reader.client, "user")
	switch {
	case err != nil || u.Email != "v2":
		t.Fatalf("after the refetch: %+v, %v; want v2", u, err)
	case after.HitsL1 != before.HitsL1+1 || after.HitsL2 != before.HitsL2:
		t.Fatalf("the read after the refetch went to Redis: L1 hits %d -> %d, L2 hits %d -> %d",
			before.HitsL1, after.HitsL1, before.HitsL2, after.HitsL2)
	}
}

// TestRefetchLeavesKeysNotInUse: a key cached but never served since is
// only dropped when it changes.
func TestRefetchLeavesKeysNotInUse(t *testing.T) {
	ctx := context.Background()
	writer, reader := refetchPair(t)
	if err := writer.users.Set(ctx, "2", User{ID: "2", Email: "v1"}); err != nil {
		t.Fatal(err)
	}
	if u, err := reader.users.Get(ctx, "2"); err != nil || u.Email != "v1" {
		t.Fatalf("first read: %+v, %v", u, err)
	}
	received := reader.client.Stats().InvalidationsReceived
	if err := writer.users.Set(ctx, "2", User{ID: "2", Email: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if reader.client.Stats().InvalidationsReceived == received {
			return fmt.Errorf("the write's invalidation has not arrived")
		}
		return nil
	})
	if n := cacheStats(reader.client, "user").Refetches; n != 0 {
		t.Fatalf("%d refetches of a key never served in-process", n)
	}
	if u, err := reader.users.Get(ctx, "2"); err != nil || u.Email != "v2" {
		t.Fatalf("after the write: %+v, %v; want v2", u, err)
	}
}

// TestRefetchAfterDeleteFindsNothing: a deleted key is not brought back,
// and a Fetch after it loads.
func TestRefetchAfterDeleteFindsNothing(t *testing.T) {
	ctx := context.Background()
	writer, reader := refetchPair(t)
	if err := writer.users.Set(ctx, "3", User{ID: "3", Email: "v1"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, reader.client, reader.users, ctx, "3")
	if err := writer.users.Delete(ctx, "3"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if n := cacheStats(reader.client, "user").Refetches; n != 1 {
			return fmt.Errorf("%d refetches, want 1", n)
		}
		return nil
	})
	u, err := reader.users.Fetch(ctx, "3", func(context.Context, string) (User, error) {
		return User{ID: "3", Email: "loaded"}, nil
	})
	if err != nil || u.Email != "loaded" {
		t.Fatalf("Fetch after the delete: %+v, %v; want the loaded value", u, err)
	}
}

// TestRefetchIsBounded: a bulk write of many keys in use here reads each
// again or, beyond the bound, only drops it; every key then reads the
// new value.
func TestRefetchIsBounded(t *testing.T) {
	ctx := context.Background()
	writer, reader := refetchPair(t)
	const n = 300
	values := make(map[string]User, n)
	for i := range n {
		id := fmt.Sprint("b", i)
		values[id] = User{ID: id, Email: "v1"}
	}
	if err := writer.users.Warm(ctx, values); err != nil {
		t.Fatal(err)
	}
	for id := range values {
		awaitL1(t, reader.client, reader.users, ctx, id)
		values[id] = User{ID: id, Email: "v2"}
	}
	if err := writer.users.Warm(ctx, values); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		got := cacheStats(reader.client, "user").Refetches + reader.client.Stats().RefetchesSkipped
		if got != n {
			return fmt.Errorf("%d keys refetched or skipped, want %d", got, n)
		}
		return nil
	})
	for id := range values {
		if u, err := reader.users.Get(ctx, id); err != nil || u.Email != "v2" {
			t.Fatalf("%s after the bulk write: %+v, %v", id, u, err)
		}
	}
}
