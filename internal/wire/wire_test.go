package wire_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tieredcache/tieredcache/internal/wire"
)

func TestMessageRoundTrip(t *testing.T) {
	in := wire.Message{Origin: "a", Kind: wire.KindFill, Keys: []string{"k1", "k2"}}
	b, err := wire.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Origin != "a" || out.Kind != wire.KindFill || len(out.Keys) != 2 || out.Keys[1] != "k2" {
		t.Fatalf("round trip = %+v", out)
	}
}

func TestDecodeMessageDefaultsAndExtensions(t *testing.T) {
	m, err := wire.Decode([]byte(`{"origin":"py-1","keys":["k"],"extra":true}`))
	if err != nil || m.Kind != wire.KindInvalidate {
		t.Fatalf("DecodeMessage = %+v, %v", m, err)
	}
}

func TestDecodeMessageMalformed(t *testing.T) {
	bad := []string{
		``,
		`not json`,
		`{"origin":"a","keys":[]}`,
		`{"origin":"","keys":["k"]}`,
		`{"keys":["k"]}`,
		`{"origin":"a"}`,
		`{"origin":"a","keys":[""]}`,
		`{"origin":"a","keys":[1]}`,
		`{"origin":"a","keys":"k"}`,
		`{"origin":"a","keys":["k"]} {}`,
		`[]`,
		`{"origin":"a","keys":["` + strings.Repeat("x", wire.MaxKeyBytes+1) + `"]}`,
		`{"origin":"a","keys":["k"],"pad":"` + strings.Repeat("x", wire.MaxBytes) + `"}`,
	}
	for _, s := range bad {
		if m, err := wire.Decode([]byte(s)); !errors.Is(err, wire.ErrMalformed) {
			name := s
			if len(name) > 60 {
				name = name[:60] + "..."
			}
			t.Errorf("DecodeMessage(%q) = %+v, %v; want ErrMalformed", name, m, err)
		}
	}
}

func TestEncodeMessagesSplits(t *testing.T) {
	keys := make([]string, 2*wire.MaxKeys+5)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	msgs, err := wire.EncodeAll(wire.Message{Origin: "o", Keys: keys})
	if err != nil || len(msgs) != 3 {
		t.Fatalf("EncodeMessages by count = %d messages, %v; want 3", len(msgs), err)
	}
	big := make([]string, 1000)
	for i := range big {
		// encoding/json writes each & as \u0026: six bytes for one.
		big[i] = fmt.Sprintf("%04d%s", i, strings.Repeat("&", 1200))
	}
	msgs, err = wire.EncodeAll(wire.Message{Origin: "o", Kind: wire.KindFill, Keys: big})
	if err != nil || len(msgs) < 2 {
		t.Fatalf("EncodeMessages by size = %d messages, %v", len(msgs), err)
	}
	seen := 0
	for _, b := range msgs {
		if len(b) > wire.MaxBytes {
			t.Fatalf("message of %d bytes", len(b))
		}
		m, err := wire.Decode(b)
		if err != nil || m.Kind != wire.KindFill {
			t.Fatalf("part does not decode: %v", err)
		}
		seen += len(m.Keys)
	}
	if seen != len(big) {
		t.Fatalf("%d keys across the parts, want %d", seen, len(big))
	}
}

func TestEncodeMessageValidates(t *testing.T) {
	if _, err := wire.Encode(wire.Message{Origin: "a"}); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("EncodeMessage without keys = %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"origin":"a","kind":"fill","keys":["k1","k2"]}`))
	f.Add([]byte(`{"origin":"a","keys":[""]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := wire.Decode(data)
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if m.Origin == "" || len(m.Keys) == 0 || m.Kind == "" {
			t.Fatalf("accepted an invalid message: %+v", m)
		}
		for _, k := range m.Keys {
			if k == "" {
				t.Fatal("accepted an empty key")
			}
		}
		// What was accepted must survive a round trip.
		b, err := wire.Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := wire.Decode(b); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
