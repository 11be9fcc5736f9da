package envelope_test

import (
	"testing"

	"github.com/tieredcache/tieredcache/internal/envelope"
)

// benchModes are the configurations benchmarked: compression, encryption,
// and both.
func benchModes() []mode {
	var ms []mode
	for _, m := range modes() {
		if m.name != "plain" {
			ms = append(ms, m)
		}
	}
	return ms
}

// BenchmarkSeal seals 1 MiB of user-like JSON. MB/s is of the JSON;
// stored/orig is the stored size as a fraction of it.
func BenchmarkSeal(b *testing.B) {
	plain := usersJSON(1 << 20)
	for _, m := range benchModes() {
		b.Run(m.name, func(b *testing.B) {
			e := mustNew(b, m.cfg)
			var dst []byte
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			for b.Loop() {
				stored, err := e.Seal(dst[:0], redisKey, plain)
				if err != nil {
					b.Fatal(err)
				}
				if envelope.IsEnveloped(stored) {
					dst = stored
				}
			}
			b.ReportMetric(float64(len(dst))/float64(len(plain)), "stored/orig")
		})
	}
}

// BenchmarkOpen opens what BenchmarkSeal stores.
func BenchmarkOpen(b *testing.B) {
	plain := usersJSON(1 << 20)
	for _, m := range benchModes() {
		b.Run(m.name, func(b *testing.B) {
			e := mustNew(b, m.cfg)
			stored, err := e.Seal(nil, redisKey, plain)
			if err != nil {
				b.Fatal(err)
			}
			var dst []byte
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			for b.Loop() {
				if dst, err = e.Open(dst[:0], redisKey, stored); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(stored))/float64(len(plain)), "stored/orig")
		})
	}
}
