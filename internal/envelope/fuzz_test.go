package envelope_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tieredcache/tieredcache/internal/envelope"
)

// FuzzOpen opens arbitrary bytes with every configuration: Open never
// panics, fails only with ErrUndecodable, passes through what does not start
// with the marker, and never returns more than MaxDecoded bytes. Sealing the
// same bytes then opens to them again.
func FuzzOpen(f *testing.F) {
	const limit = 1 << 20
	var envs []*envelope.Envelope
	for _, m := range modes() {
		m.cfg.MinSize, m.cfg.MaxDecoded = 16, limit
		envs = append(envs, mustNew(f, m.cfg))
	}
	for _, e := range envs {
		for _, v := range [][]byte{[]byte(`{"id":1}`), usersJSON(512), []byte("\xff"), {}} {
			stored, err := e.Seal(nil, redisKey, v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(stored)
		}
	}
	f.Add([]byte{0xFF, 0x01, 0x04, 0x02, 'k', '1'})
	f.Add([]byte(" {}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range envs {
			got, err := e.Open(nil, redisKey, b)
			if err != nil {
				if !errors.Is(err, envelope.ErrUndecodable) || got != nil {
					t.Fatalf("Open(%q) = %d bytes, %v; want nil, ErrUndecodable", b, len(got), err)
				}
			} else if !envelope.IsEnveloped(b) && !bytes.Equal(got, b) {
				t.Fatalf("Open(%q) = %q, want it passed through", b, got)
			} else if len(got) > limit {
				t.Fatalf("Open(%q) returned %d bytes, over MaxDecoded", b, len(got))
			}
			stored, err := e.Seal(nil, redisKey, b)
			if err != nil {
				t.Fatalf("Seal(%q): %v", b, err)
			}
			if got, err := e.Open(nil, redisKey, stored); err != nil || !bytes.Equal(got, b) {
				t.Fatalf("Seal then Open of %q = %q, %v", b, got, err)
			}
		}
	})
}
