package tiered_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

type benchUser struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

func benchCache(b *testing.B) *tiered.Cache[benchUser] {
	b.Helper()
	kb, err := keys.New("fastapi_template")
	if err != nil {
		b.Fatal(err)
	}
	c, err := tiered.New(tiered.Options{Keys: kb, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	users, err := tiered.NewCache[benchUser](c, "user")
	if err != nil {
		b.Fatal(err)
	}
	if err := users.Set(context.Background(), "uuid-456", benchUser{ID: "uuid-456", Email: "a@example.com"}); err != nil {
		b.Fatal(err)
	}
	return users
}

func loadBenchUser(ctx context.Context, id string) (benchUser, error) {
	return benchUser{ID: id}, nil
}

func BenchmarkL1Hit(b *testing.B) {
	users := benchCache(b)
	ctx := context.Background()
	get := users.Wrap(loadBenchUser)
	b.Run("Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := users.Get(ctx, "uuid-456"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := get(ctx, "uuid-456"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := users.Get(ctx, "uuid-456"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
