package remote_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tieredcache/tieredcache/remote"
)

func TestMessageRoundTrip(t *testing.T) {
	in := remote.Message{Origin: "a", Kind: remote.KindFill, Keys: []string{"k1", "k2"}}
	b, err := remote.EncodeMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := remote.DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Origin != "a" || out.Kind != remote.KindFill || len(out.Keys) != 2 || out.Keys[1] != "k2" {
		t.Fatalf("round trip = %+v", out)
	}
}

func TestDecodeMessageDefaultsAndExtensions(t *testing.T) {
	m, err := remote.DecodeMessage([]byte(`{"origin":"py-1","keys":["k"],"extra":true}`))
	if err != nil || m.Kind != remote.KindInvalidate {
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
		`{"origin":"a","keys":["` + strings.Repeat("x", remote.MaxKeyBytes+1) + `"]}`,
		`{"origin":"a","keys":["k"],"pad":"` + strings.Repeat("x", remote.MaxMessageBytes) + `"}`,
	}
	for _, s := range bad {
		if m, err := remote.DecodeMessage([]byte(s)); !errors.Is(err, remote.ErrMalformed) {
			name := s
			if len(name) > 60 {
				name = name[:60] + "..."
			}
			t.Errorf("DecodeMessage(%q) = %+v, %v; want ErrMalformed", name, m, err)
		}
	}
}

func TestEncodeMessagesSplits(t *testing.T) {
	keys := make([]string, 2*remote.MaxMessageKeys+5)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	msgs, err := remote.EncodeMessages(remote.Message{Origin: "o", Keys: keys})
	if err != nil || len(msgs) != 3 {
		t.Fatalf("EncodeMessages by count = %d messages, %v; want 3", len(msgs), err)
	}
	big := make([]string, 1000)
	for i := range big {
		// encoding/json writes each & as \u0026: six bytes for one.
		big[i] = fmt.Sprintf("%04d%s", i, strings.Repeat("&", 1200))
	}
	msgs, err = remote.EncodeMessages(remote.Message{Origin: "o", Kind: remote.KindFill, Keys: big})
	if err != nil || len(msgs) < 2 {
		t.Fatalf("EncodeMessages by size = %d messages, %v", len(msgs), err)
	}
	seen := 0
	for _, b := range msgs {
		if len(b) > remote.MaxMessageBytes {
			t.Fatalf("message of %d bytes", len(b))
		}
		m, err := remote.DecodeMessage(b)
		if err != nil || m.Kind != remote.KindFill {
			t.Fatalf("part does not decode: %v", err)
		}
		seen += len(m.Keys)
	}
	if seen != len(big) {
		t.Fatalf("%d keys across the parts, want %d", seen, len(big))
	}
}

func TestEncodeMessageValidates(t *testing.T) {
	if _, err := remote.EncodeMessage(remote.Message{Origin: "a"}); !errors.Is(err, remote.ErrMalformed) {
		t.Fatalf("EncodeMessage without keys = %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"origin":"a","kind":"fill","keys":["k1","k2"]}`))
	f.Add([]byte(`{"origin":"a","keys":[""]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := remote.DecodeMessage(data)
		if err != nil {
			if !errors.Is(err, remote.ErrMalformed) {
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
		b, err := remote.EncodeMessage(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := remote.DecodeMessage(b); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzJSONCodec(f *testing.F) {
	f.Add([]byte(`{"id":"uuid-456","name":"Ada","orgs":["org-1"]}`))
	f.Add([]byte(`{"id":`))
	f.Add([]byte("\xff"))
	type user struct {
		ID   string   `json:"id"`
		Name string   `json:"name"`
		Orgs []string `json:"orgs"`
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var u user
		if err := (remote.JSON{}).Unmarshal(data, &u); err != nil {
			return
		}
		b, err := (remote.JSON{}).Marshal(u)
		if err != nil {
			t.Fatalf("Marshal after Unmarshal: %v", err)
		}
		var u2 user
		if err := (remote.JSON{}).Unmarshal(b, &u2); err != nil {
			t.Fatalf("Unmarshal of own output %q: %v", b, err)
		}
	})
}
