package remote_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/remote"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestStoreWritesAndPublishes(t *testing.T) {
	rdb := redistest.Shared(t).Client(t)
	p := redistest.Prefix(t)
	ctx := context.Background()
	s, err := remote.NewStore(rdb, remote.StoreConfig{Channel: p + ":bus", Origin: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sub := rdb.Subscribe(ctx, p+":bus")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	key := p + ":tenant-global:user:1:v1"
	if _, _, err := s.Get(ctx, key); !errors.Is(err, remote.ErrMiss) {
		t.Fatalf("Get of an absent key: %v, want ErrMiss", err)
	}
	if err := s.Set(ctx, key, []byte(`{"id":"1"}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	v, ttl, err := s.Get(ctx, key)
	if err != nil || string(v) != `{"id":"1"}` || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("Get = %q, %v, %v", v, ttl, err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, remote.ErrMiss) {
		t.Fatalf("Get after Delete: %v", err)
	}
	for range 2 {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m, err := remote.DecodeMessage([]byte(msg.Payload))
		if err != nil || m.Origin != "test" || m.Kind != "invalidate" || len(m.Keys) != 1 || m.Keys[0] != key {
			t.Fatalf("message %q: %+v, %v", msg.Payload, m, err)
		}
	}
}

func TestStoreRefusesANegativeTimeout(t *testing.T) {
	if _, err := remote.NewStore(nil, remote.StoreConfig{Timeout: -1}); err == nil {
		t.Fatal("negative Timeout accepted")
	}
}

func TestMessages(t *testing.T) {
	b, err := remote.EncodeMessage(remote.Message{Origin: "svc", Keys: []string{"app:k"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := remote.DecodeMessage(b)
	if err != nil || m.Kind != "invalidate" || m.Keys[0] != "app:k" {
		t.Fatalf("DecodeMessage(%s) = %+v, %v", b, m, err)
	}
	for _, bad := range []string{`{"keys":["k"]}`, `{"origin":"o","keys":[]}`, `{"origin":"o","keys":["k"]} x`, `[`} {
		if _, err := remote.DecodeMessage([]byte(bad)); !errors.Is(err, remote.ErrMalformed) {
			t.Errorf("DecodeMessage(%s) = %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := remote.EncodeMessage(remote.Message{Origin: "svc"}); !errors.Is(err, remote.ErrMalformed) {
		t.Errorf("EncodeMessage without keys: %v", err)
	}
}
