package envelope_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/tieredcache/tieredcache/internal/envelope"
)

const redisKey = "app:tenant-acme:user:42:v1"

func mustNew(t testing.TB, c envelope.Config) *envelope.Envelope {
	t.Helper()
	e, err := envelope.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func encrypted(c envelope.Config) bool  { return c.KeyID != "" }
func compressed(c envelope.Config) bool { return c.Compression != "" }

// values are the round-trip inputs: around the default threshold, JSON,
// incompressible bytes and bytes that start with the marker.
func values() map[string][]byte {
	random := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(r.UintN(255)) // never 0xFF, so never the marker
	}
	users := usersJSON(1 << 20)
	return map[string][]byte{
		"empty":              {},
		"object":             []byte(`{}`),
		"null":               []byte(`null`),
		"whitespace":         []byte(" \t\r\n[1, 2]"),
		"below threshold":    users[:envelope.DefaultMinSize-1],
		"at threshold":       users[:envelope.DefaultMinSize],
		"users 1 MiB":        users,
		"incompressible":     random,
		"marker":             {0xFF},
		"marker compresses":  append([]byte{0xFF}, users[:8<<10]...),
		"marker alone large": append([]byte{0xFF}, random[:4<<10]...),
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range modes() {
		e := mustNew(t, m.cfg)
		for name, v := range values() {
			stored, err := e.Seal(nil, redisKey, v)
			if err != nil {
				t.Fatalf("%s %s: Seal: %v", m.name, name, err)
			}
			got, err := e.Open(nil, redisKey, stored)
			if err != nil {
				t.Fatalf("%s %s: Open: %v", m.name, name, err)
			}
			if !bytes.Equal(got, v) {
				t.Fatalf("%s %s: Open returned %d bytes, want the %d sealed", m.name, name, len(got), len(v))
			}
			startsWithMarker := len(v) > 0 && v[0] == 0xFF
			compressible := strings.HasPrefix(name, "users") || name == "at threshold" || name == "marker compresses"
			switch {
			case encrypted(m.cfg) || startsWithMarker:
				if !envelope.IsEnveloped(stored) {
					t.Errorf("%s %s: stored without an envelope", m.name, name)
				}
			case compressed(m.cfg) && compressible:
				if !envelope.IsEnveloped(stored) || len(stored) >= len(v) {
					t.Errorf("%s %s: stored %d bytes for %d, want a smaller envelope", m.name, name, len(stored), len(v))
				}
			default:
				if !bytes.Equal(stored, v) {
					t.Errorf("%s %s: stored %q..., want the value as it is", m.name, name, stored[:min(len(stored), 8)])
				}
			}
			if compressed(m.cfg) && compressible && encrypted(m.cfg) && len(stored) >= len(v) {
				t.Errorf("%s %s: stored %d bytes for %d: not compressed", m.name, name, len(stored), len(v))
			}
		}
	}
}

// Seal and Open append to dst when they build a new value.
func TestAppendsToDst(t *testing.T) {
	v := usersJSON(4 << 10)
	for _, m := range modes() {
		e := mustNew(t, m.cfg)
		stored, err := e.Seal([]byte("prefix"), redisKey, v)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(stored, v) {
			continue // plain: nothing was appended
		}
		if !bytes.HasPrefix(stored, []byte("prefix")) || !envelope.IsEnveloped(stored[len("prefix"):]) {
			t.Fatalf("%s: Seal did not append an envelope to dst", m.name)
		}
		stored = stored[len("prefix"):]
		got, err := e.Open([]byte("dst"), redisKey, stored)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append([]byte("dst"), v...)) {
			t.Fatalf("%s: Open did not append to dst", m.name)
		}
	}
}

// Values that do not start with the marker, such as the Python template's
// plain JSON, read as they are, whatever the Envelope's configuration.
func TestPlainPassesThrough(t *testing.T) {
	docs := [][]byte{
		[]byte(`{"id":42,"email":"ada@example.com"}`),
		[]byte(`[]`), []byte(`"text"`), []byte(`-1`), []byte(`null`), []byte(" {}"),
		usersJSON(64 << 10),
		{0x00, 0x01}, {0xFE, 0xFF},
	}
	for _, m := range modes() {
		e := mustNew(t, m.cfg)
		for _, d := range docs {
			if envelope.IsEnveloped(d) {
				t.Fatalf("IsEnveloped(%q) = true", d)
			}
			got, err := e.Open([]byte("dst"), redisKey, d)
			if err != nil {
				t.Fatalf("%s: Open(%q): %v", m.name, d[:min(len(d), 16)], err)
			}
			if len(d) > 0 && &got[0] != &d[0] || len(got) != len(d) {
				t.Fatalf("%s: Open(%q) did not return its input", m.name, d[:min(len(d), 16)])
			}
		}
		if got, err := e.Open(nil, redisKey, nil); got != nil || err != nil {
			t.Fatalf("%s: Open(nil) = %q, %v", m.name, got, err)
		}
	}
}

func TestThreshold(t *testing.T) {
	v := bytes.Repeat([]byte(`{"a":1},`), 20)
	for _, c := range []string{"s2", "zstd"} {
		e := mustNew(t, envelope.Config{Compression: c, MinSize: 100})
		below, _ := e.Seal(nil, redisKey, v[:99])
		at, _ := e.Seal(nil, redisKey, v[:100])
		if !bytes.Equal(below, v[:99]) {
			t.Errorf("%s: 99 bytes under MinSize 100 were not stored as they are", c)
		}
		if !envelope.IsEnveloped(at) || len(at) >= 100 {
			t.Errorf("%s: 100 bytes at MinSize 100 stored as %d bytes, want a smaller envelope", c, len(at))
		}

		// Encrypted, a value under the threshold is enveloped uncompressed:
		// header, key id, nonce, tag and the value itself.
		e = mustNew(t, envelope.Config{Compression: c, MinSize: 100, KeyID: "k1", Keys: map[string][]byte{"k1": testKey("k1")}})
		below, _ = e.Seal(nil, redisKey, v[:99])
		if want := 3 + 1 + 2 + 12 + 16 + 99; len(below) != want {
			t.Errorf("%s: encrypted 99 bytes stored as %d, want %d (uncompressed)", c, len(below), want)
		}
		at, _ = e.Seal(nil, redisKey, v[:100])
		if len(at) >= 3+1+2+12+16+100 {
			t.Errorf("%s: encrypted 100 bytes stored as %d: not compressed", c, len(at))
		}
	}
}

// A value that compression does not shrink is stored as it is.
func TestIncompressibleStaysPlain(t *testing.T) {
	v := values()["incompressible"]
	for _, c := range []string{"s2", "zstd"} {
		stored, err := mustNew(t, envelope.Config{Compression: c}).Seal(nil, redisKey, v)
		if err != nil || !bytes.Equal(stored, v) {
			t.Errorf("%s: incompressible value stored as %d bytes (%v), want it as it is", c, len(stored), err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	k1, k2 := testKey("k1"), testKey("k2")
	old := mustNew(t, envelope.Config{KeyID: "k1", Keys: map[string][]byte{"k1": k1}})
	rotated := mustNew(t, envelope.Config{Compression: "zstd", KeyID: "k2", Keys: map[string][]byte{"k1": k1, "k2": k2}})
	retired := mustNew(t, envelope.Config{KeyID: "k2", Keys: map[string][]byte{"k2": k2}})
	v := usersJSON(8 << 10)

	sealedOld, _ := old.Seal(nil, redisKey, v)
	if got, err := rotated.Open(nil, redisKey, sealedOld); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("a value sealed with k1 does not open after rotating to k2: %v", err)
	}
	sealedNew, _ := rotated.Seal(nil, redisKey, v)
	if got, err := retired.Open(nil, redisKey, sealedNew); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("a new value does not open with k2 alone, so it was not sealed with k2: %v", err)
	}
	if _, err := old.Open(nil, redisKey, sealedNew); !errors.Is(err, envelope.ErrUnknownKey) {
		t.Fatalf("a process without k2 opened a k2 value: err = %v, want ErrUnknownKey", err)
	}
	_, err := retired.Open(nil, redisKey, sealedOld)
	if !errors.Is(err, envelope.ErrUnknownKey) || !errors.Is(err, envelope.ErrUndecodable) {
		t.Fatalf("k1 removed, a k1 value: err = %v, want ErrUnknownKey and ErrUndecodable", err)
	}
	if !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("error %q does not name the key id", err)
	}
}

// The Redis key is the associated data: a ciphertext moved under another
// key or tenant does not open.
func TestBoundToRedisKey(t *testing.T) {
	for _, m := range modes() {
		if !encrypted(m.cfg) {
			continue
		}
		e := mustNew(t, m.cfg)
		stored, _ := e.Seal(nil, "app:tenant-acme:user:42:v1", usersJSON(4<<10))
		for _, other := range []string{"app:tenant-evil:user:42:v1", "app:tenant-acme:user:43:v1", "app:tenant-acme:user:42:v2", ""} {
			_, err := e.Open(nil, other, stored)
			if !errors.Is(err, envelope.ErrUndecodable) || errors.Is(err, envelope.ErrUnknownKey) {
				t.Errorf("%s: opened under %q: err = %v, want ErrUndecodable", m.name, other, err)
			}
		}
	}
}

func TestWrongKeySameID(t *testing.T) {
	a := mustNew(t, envelope.Config{KeyID: "k1", Keys: map[string][]byte{"k1": testKey("a")}})
	b := mustNew(t, envelope.Config{KeyID: "k1", Keys: map[string][]byte{"k1": testKey("b")}})
	stored, _ := a.Seal(nil, redisKey, []byte(`{"id":1}`))
	if _, err := b.Open(nil, redisKey, stored); !errors.Is(err, envelope.ErrUndecodable) || errors.Is(err, envelope.ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUndecodable", err)
	}
}

// An Envelope without keys opens what is unencrypted and reports encrypted
// values as sealed with an unknown key.
func TestNoKeyring(t *testing.T) {
	none := mustNew(t, envelope.Config{})
	v := usersJSON(4 << 10)
	for _, m := range modes() {
		stored, _ := mustNew(t, m.cfg).Seal(nil, redisKey, v)
		got, err := none.Open(nil, redisKey, stored)
		if encrypted(m.cfg) {
			if !errors.Is(err, envelope.ErrUnknownKey) {
				t.Errorf("%s: err = %v, want ErrUnknownKey", m.name, err)
			}
		} else if err != nil || !bytes.Equal(got, v) {
			t.Errorf("%s: the zero Config does not open it: %v", m.name, err)
		}
	}
}

// Changing any byte of an envelope, cutting or extending it, fails with
// ErrUndecodable, never a panic or another value. Changing the first byte
// makes it a plain value, which Open passes through as it is.
func TestTamper(t *testing.T) {
	type sealed struct {
		name   string
		e      *envelope.Envelope
		stored []byte
	}
	v := usersJSON(2 << 10)
	var cases []sealed
	for _, m := range modes() {
		e := mustNew(t, m.cfg)
		stored, _ := e.Seal(nil, redisKey, v)
		if envelope.IsEnveloped(stored) {
			cases = append(cases, sealed{m.name, e, stored})
		}
		marked, _ := e.Seal(nil, redisKey, []byte("\xff not JSON"))
		cases = append(cases, sealed{m.name + " marker", e, marked})
	}
	for _, c := range cases {
		for i := range c.stored {
			for _, x := range []byte{0x01, 0x80, 0xFF} {
				b := bytes.Clone(c.stored)
				b[i] ^= x
				got, err := c.e.Open(nil, redisKey, b)
				if i == 0 {
					if err != nil || &got[0] != &b[0] {
						t.Fatalf("%s: first byte changed: Open = %v, want the bytes passed through", c.name, err)
					}
					continue
				}
				if !errors.Is(err, envelope.ErrUndecodable) || got != nil {
					t.Fatalf("%s: byte %d ^ %#x: Open = %d bytes, %v; want ErrUndecodable", c.name, i, x, len(got), err)
				}
			}
		}
		for n := 1; n < len(c.stored); n++ {
			if _, err := c.e.Open(nil, redisKey, c.stored[:n]); !errors.Is(err, envelope.ErrUndecodable) {
				t.Fatalf("%s: cut to %d bytes: err = %v, want ErrUndecodable", c.name, n, err)
			}
		}
		if _, err := c.e.Open(nil, redisKey, append(bytes.Clone(c.stored), 0)); !errors.Is(err, envelope.ErrUndecodable) {
			t.Fatalf("%s: extended: err = %v, want ErrUndecodable", c.name, err)
		}
	}
}

func TestUnknownVersionAndFlags(t *testing.T) {
	e := mustNew(t, envelope.Config{})
	for _, b := range [][]byte{
		rawEnvelope(0x02, 0x00, []byte("{}")), // version 2
		rawEnvelope(0x01, 0x03, []byte("{}")), // compression 3
		rawEnvelope(0x01, 0x08, []byte("{}")), // a reserved bit
		{0xFF}, {0xFF, 0x01}, {0xFF, 0x01, 0x04}, {0xFF, 0x01, 0x04, 0x00},
	} {
		if _, err := e.Open(nil, redisKey, b); !errors.Is(err, envelope.ErrUndecodable) {
			t.Errorf("Open(% x) err = %v, want ErrUndecodable", b, err)
		}
	}
}

// rawEnvelope builds an unencrypted envelope by hand, as doc.go describes it.
func rawEnvelope(version, flags byte, payload []byte) []byte {
	b := append([]byte{0xFF, version, flags}, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// A small envelope that decodes to more than MaxDecoded fails with
// ErrTooLarge, without allocating what it claims.
func TestDecompressionBomb(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, 64<<20)
	strict := mustNew(t, envelope.Config{MaxDecoded: limit, KeyID: "k1", Keys: map[string][]byte{"k1": testKey("k1")}})

	zframe := func(n int) []byte {
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		return enc.EncodeAll(zeros[:n], nil)
	}
	bombs := map[string][]byte{
		"s2":                     rawEnvelope(1, 1, s2.Encode(nil, zeros)),
		"s2 claims 2 GiB":        rawEnvelope(1, 1, append(binary.AppendUvarint(nil, 2<<30), 0, 0, 0)),
		"zstd":                   rawEnvelope(1, 2, zframe(len(zeros))),
		"zstd frames under":      rawEnvelope(1, 2, bytes.Repeat(zframe(limit/2+1), 64)),
		"zstd frame over by 1":   rawEnvelope(1, 2, zframe(limit+1)),
		"zstd frame at limit ok": rawEnvelope(1, 2, zframe(limit)),
	}
	for _, c := range []string{"s2", "zstd"} {
		loose := mustNew(t, envelope.Config{Compression: c, MaxDecoded: len(zeros), KeyID: "k1", Keys: map[string][]byte{"k1": testKey("k1")}})
		b, err := loose.Seal(nil, redisKey, zeros)
		if err != nil {
			t.Fatal(err)
		}
		bombs[c+"+aes-gcm"] = b
	}
	for name, b := range bombs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := strict.Open(nil, redisKey, b)
		runtime.ReadMemStats(&after)
		if strings.HasSuffix(name, " ok") {
			if err != nil || len(got) != limit {
				t.Errorf("%s: Open = %d bytes, %v; want %d bytes", name, len(got), err, limit)
			}
			continue
		}
		if !errors.Is(err, envelope.ErrTooLarge) || !errors.Is(err, envelope.ErrUndecodable) {
			t.Errorf("%s (%d bytes): err = %v, want ErrTooLarge", name, len(b), err)
		}
		// The bound allows the limit plus buffers, nothing near 64 MiB.
		alloc := after.TotalAlloc - before.TotalAlloc
		if alloc > 4*limit+uint64(len(b)) {
			t.Errorf("%s: Open allocated %d bytes to refuse it", name, alloc)
		}
		t.Logf("%s: %d bytes stored, refused having allocated %d bytes: %v", name, len(b), alloc, err)
	}
	// Seal refuses to compress what Open would refuse to decompress, and
	// leaves a value that is not compressed alone.
	for _, c := range []string{"s2", "zstd"} {
		e := mustNew(t, envelope.Config{Compression: c, MaxDecoded: limit})
		if _, err := e.Seal(nil, redisKey, zeros[:limit+1]); !errors.Is(err, envelope.ErrTooLarge) {
			t.Errorf("%s: Seal over MaxDecoded: err = %v, want ErrTooLarge", c, err)
		}
	}
	if _, err := strict.Seal(nil, redisKey, zeros[:limit+1]); err != nil {
		t.Errorf("Seal over MaxDecoded, encrypted but not compressed: %v", err)
	}
	if _, err := mustNew(t, envelope.Config{MaxDecoded: limit}).Seal(nil, redisKey, zeros[:limit+1]); err != nil {
		t.Errorf("Seal over MaxDecoded, left plain: %v", err)
	}
}

// A zstd frame without a content size was not written by this package.
func TestZstdFrameWithoutContentSize(t *testing.T) {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = mustNew(t, envelope.Config{}).Open(nil, redisKey, rawEnvelope(1, 2, buf.Bytes()))
	if !errors.Is(err, envelope.ErrUndecodable) {
		t.Fatalf("err = %v, want ErrUndecodable", err)
	}
}

func TestConcurrent(t *testing.T) {
	users := usersJSON(64 << 10)
	var envs []*envelope.Envelope
	for _, m := range modes() {
		envs = append(envs, mustNew(t, m.cfg))
	}
	const goroutines, rounds = 8, 40
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 0))
			var sbuf, obuf []byte
			for i := range rounds {
				e := envs[r.IntN(len(envs))]
				v := users[:r.IntN(len(users))]
				key := redisKey + string(rune('a'+g)) + string(rune('a'+i%26))
				stored, err := e.Seal(sbuf[:0], key, v)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := e.Open(obuf[:0], key, stored)
				if err != nil || !bytes.Equal(got, v) {
					t.Errorf("round trip of %d bytes: %v", len(v), err)
					return
				}
				// Reuse the buffers unless the result is v itself (these
				// values never start with the marker, so an envelope here
				// is always appended to dst).
				if envelope.IsEnveloped(stored) {
					sbuf, obuf = stored, got
				}
			}
		})
	}
	wg.Wait()
}

func TestNewValidates(t *testing.T) {
	k := testKey("k")
	for _, tc := range []struct {
		name string
		cfg  envelope.Config
		want string
	}{
		{"compression", envelope.Config{Compression: "gzip"}, `unknown Compression "gzip"`},
		{"min size", envelope.Config{MinSize: -1}, "MinSize -1 is negative"},
		{"max decoded", envelope.Config{MaxDecoded: -1}, "MaxDecoded -1 is out of range"},
		{"short key", envelope.Config{KeyID: "k", Keys: map[string][]byte{"k": k[:16]}}, `key "k" is 16 bytes; AES-256 needs 32`},
		{"long key", envelope.Config{KeyID: "k", Keys: map[string][]byte{"k": append(k, 0)}}, `key "k" is 33 bytes`},
		{"missing current", envelope.Config{KeyID: "k2", Keys: map[string][]byte{"k": k}}, `KeyID "k2" is not in Keys`},
		{"current without keys", envelope.Config{KeyID: "k"}, `KeyID "k" is not in Keys`},
		{"keys without current", envelope.Config{Keys: map[string][]byte{"k": k}}, `Keys given without a KeyID`},
		{"empty id", envelope.Config{KeyID: "k", Keys: map[string][]byte{"k": k, "": k}}, `key id "" must be 1 to 255 bytes`},
		{"long id", envelope.Config{KeyID: "k", Keys: map[string][]byte{"k": k, strings.Repeat("x", 256): k}}, `must be 1 to 255 bytes`},
	} {
		_, err := envelope.New(tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), "envelope: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New error = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	long := strings.Repeat("x", 255)
	e := mustNew(t, envelope.Config{KeyID: long, Keys: map[string][]byte{long: k}})
	if stored, _ := e.Seal(nil, redisKey, []byte("{}")); stored == nil {
		t.Fatal("a 255-byte key id does not seal")
	}
}

// New copies the keys: changing the caller's slice afterwards changes
// nothing.
func TestNewCopiesKeys(t *testing.T) {
	k := testKey("k")
	cfg := envelope.Config{KeyID: "k", Keys: map[string][]byte{"k": k}}
	e := mustNew(t, cfg)
	stored, _ := e.Seal(nil, redisKey, []byte(`{"id":1}`))
	clear(k)
	delete(cfg.Keys, "k")
	if got, err := e.Open(nil, redisKey, stored); err != nil || string(got) != `{"id":1}` {
		t.Fatalf("Open after the caller cleared its key: %q, %v", got, err)
	}
}
