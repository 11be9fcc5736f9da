package tiered_test

import (
	"bytes"
	"context"
	"errors"

	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/tiered"
)

type Doc struct {
	ID   string `json:"id"`
	Body string `json:"body"`
}

func docs(t *testing.T, e *env, opts ...tiered.Option) *tiered.Cache[Doc] {
	t.Helper()
	c, err := tiered.NewCache[Doc](e.client, "doc", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func docKey(t *testing.T, e *env, id string) string {
	t.Helper()
	k, err := e.kb.Build(context.Background(), "doc", id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCompression(t *testing.T) {
	e := newEnv(t, tiered.Options{MaxValueBytes: 64 << 10})
	ctx := context.Background()
	body := strings.Repeat(`{"name":"Ada Lovelace","email":"ada@example.com"},`, 4000) // ~200 KB
	for _, algo := range []string{"s2", "zstd"} {
		w := docs(t, e, tiered.Compress(algo, 0))
		if err := w.Set(ctx, algo, Doc{ID: algo, Body: body}); err != nil {
			t.Fatalf("%s: Set of a value over MaxValueBytes that compresses under it: %v", algo, err)
		}
		raw := []byte(e.rdb.Get(ctx, docKey(t, e, algo)).Val())
		if raw[0] != 0xFF || len(raw) > 64<<10 {
			t.Fatalf("%s: stored %d bytes starting %x", algo, len(raw), raw[:4])
		}
		// Any cache reads compressed values, whatever its options.
		peer := peerEnv(t, e, tiered.Options{})
		d, err := docs(t, peer).Get(ctx, algo)
		if err != nil || d.Body != body {
			t.Fatalf("%s: a peer without Compress read %d bytes, %v", algo, len(d.Body), err)
		}
		t.Logf("%s: %d bytes of JSON stored as %d", algo, len(body)+30, len(raw))
	}
	// Small values stay plain JSON.
	w := docs(t, e, tiered.Compress("s2", 0))
	if err := w.Set(ctx, "small", Doc{ID: "small"}); err != nil {
		t.Fatal(err)
	}
	if v := e.rdb.Get(ctx, docKey(t, e, "small")).Val(); v != `{"id":"small","body":""}` {
		t.Fatalf("a small value is stored as %q", v)
	}
	if _, err := tiered.NewCache[Doc](e.client, "doc", tiered.Compress("lz4", 0)); err == nil {
		t.Fatal("an unknown algorithm accepted")
	}
}

func TestEncryption(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old := docs(t, e, tiered.Encrypt("k1", map[string][]byte{"k1": k1}))
	if err := old.Set(ctx, "secret", Doc{ID: "secret", Body: "the launch codes"}); err != nil {
		t.Fatal(err)
	}
	raw := []byte(e.rdb.Get(ctx, docKey(t, e, "secret")).Val())
	if raw[0] != 0xFF || bytes.Contains(raw, []byte("launch")) {
		t.Fatalf("stored in clear: %q", raw)
	}

	// Rotation: a peer that seals with k2 still opens what k1 sealed.
	peer := peerEnv(t, e, tiered.Options{})
	rotated := docs(t, peer, tiered.Encrypt("k2", map[string][]byte{"k1": k1, "k2": k2}))
	if d, err := rotated.Get(ctx, "secret"); err != nil || d.Body != "the launch codes" {
		t.Fatalf("rotated Get = %+v, %v", d, err)
	}
	if err := rotated.Set(ctx, "new", Doc{ID: "new", Body: "fresh"}); err != nil {
		t.Fatal(err)
	}

	// A process without the key reads a miss, counted, and leaves the
	// value in place; so does one whose keyring lacks k2.
	blind := peerEnv(t, e, tiered.Options{})
	for name, c := range map[string]*tiered.Cache[Doc]{"no keys": docs(t, blind), "old keyring": old} {
		if _, err := c.Get(ctx, "new"); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("%s: Get of a value it cannot open = %v", name, err)
		}
	}
	if n := e.rdb.Exists(ctx, docKey(t, e, "new")).Val(); n != 1 {
		t.Fatal("an unreadable value was deleted")
	}
	if s := cacheStats(blind.client, "doc"); s.DecodeErrors == 0 {
		t.Fatalf("no decode error counted: %+v", s)
	}

	// A ciphertext copied under another key (another tenant) does not open.
	e.rdb.Set(ctx, docKey(t, e, "copied"), raw, time.Minute)
	if d, err := old.Get(ctx, "copied"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("a replayed ciphertext opened: %+v, %v", d, err)
	}

	for _, bad := range []map[string][]byte{{"k1": []byte("short")}, {"other": k1}} {
		if _, err := tiered.NewCache[Doc](e.client, "doc", tiered.Encrypt("k1", bad)); err == nil {
			t.Errorf("Encrypt with keyring %v accepted", bad)
		}
	}
}

func TestCompressedAndEncrypted(t *testing.T) {
	e := newEnv(t, tiered.Options{})
	ctx := context.Background()
	c := docs(t, e, tiered.Compress("zstd", 0), tiered.Encrypt("k", map[string][]byte{"k": bytes.Repeat([]byte{7}, 32)}))
	body := strings.Repeat("compressible text ", 1000)
	loads := 0
	load := func(_ context.Context, id string) (Doc, error) {
		loads++
		return Doc{ID: id, Body: body}, nil
	}
	for i := range 2 {
		d, err := c.Fetch(ctx, "both", load)
		if err != nil || d.Body != body {
			t.Fatalf("Fetch %d: %v", i, err)
		}
	}
	raw := e.rdb.Get(ctx, docKey(t, e, "both")).Val()
	if loads != 1 || len(raw) >= len(body)/4 || strings.Contains(raw, "compressible") {
		t.Fatalf("%d loads; stored %d bytes for %d", loads, len(raw), len(body))
	}
}
