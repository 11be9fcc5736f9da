package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Defaults of Config.
const (
	DefaultMinSize    = 1 << 10
	DefaultMaxDecoded = 16 << 20
)

// KeySize is the size of a key in Config.Keys: AES-256.
const KeySize = 32

// Config configures an Envelope. The zero Config seals nothing: values stay
// plain, and Open still opens the envelopes it has the keys for.
type Config struct {
	// Compression is the algorithm for values of at least MinSize bytes:
	// "" (none, the default), "s2" or "zstd". s2 is the faster, zstd the
	// smaller. Open reads every algorithm, whatever this says.
	Compression string
	// MinSize is the smallest value that is compressed; smaller ones are
	// stored as they are. Default: DefaultMinSize (1 KiB).
	MinSize int
	// KeyID names the key of Keys that seals new values. Required when Keys
	// is not empty; empty with no Keys means no encryption (the default).
	KeyID string
	// Keys is the keyring: KeySize-byte AES-256 keys by id (1 to 255
	// bytes). Open uses the key the envelope names, so keep a retired key
	// here until the values sealed with it have expired. New copies it.
	Keys map[string][]byte
	// MaxDecoded is the largest value Open decompresses: an envelope that
	// decodes to more fails with ErrTooLarge, before the memory is taken.
	// Seal refuses to compress a larger value (ErrTooLarge), since no Open
	// could read it. Default: DefaultMaxDecoded (16 MiB).
	MaxDecoded int
}

// Envelope seals and opens values. It is safe for concurrent use, holds no
// goroutines and needs no Close.
type Envelope struct {
	algo       algo
	minSize    int
	maxDecoded int
	keyID      string                 // seals with keys[keyID]; "" for none
	keys       map[string]cipher.AEAD // by key id
	zstd       func() (*zstd.Decoder, error)
}

// New returns an Envelope for c, or an error naming what is invalid.
func New(c Config) (*Envelope, error) {
	a, ok := algoNames[c.Compression]
	if !ok {
		return nil, fmt.Errorf("envelope: unknown Compression %q (want \"\", \"s2\" or \"zstd\")", c.Compression)
	}
	e := &Envelope{algo: a, minSize: c.MinSize, maxDecoded: c.MaxDecoded, keyID: c.KeyID}
	switch {
	case c.MinSize < 0:
		return nil, fmt.Errorf("envelope: MinSize %d is negative", c.MinSize)
	case c.MinSize == 0:
		e.minSize = DefaultMinSize
	}
	switch {
	case c.MaxDecoded < 0 || c.MaxDecoded > s2.MaxBlockSize:
		return nil, fmt.Errorf("envelope: MaxDecoded %d is out of range (0 to %d)", c.MaxDecoded, s2.MaxBlockSize)
	case c.MaxDecoded == 0:
		e.maxDecoded = DefaultMaxDecoded
	}
	keys, err := keyring(c.Keys)
	if err != nil {
		return nil, err
	}
	e.keys = keys
	if _, ok := keys[c.KeyID]; c.KeyID != "" && !ok {
		return nil, fmt.Errorf("envelope: KeyID %q is not in Keys", c.KeyID)
	}
	if c.KeyID == "" && len(keys) > 0 {
		return nil, fmt.Errorf("envelope: Keys given without a KeyID to seal with (one of %q)", sortedIDs(c.Keys))
	}
	limit := e.maxDecoded
	e.zstd = sync.OnceValues(func() (*zstd.Decoder, error) { return zstdDecoder(limit) })
	return e, nil
}

// keyring validates keys and makes an AEAD of each.
func keyring(keys map[string][]byte) (map[string]cipher.AEAD, error) {
	ring := make(map[string]cipher.AEAD, len(keys))
	for _, id := range sortedIDs(keys) { // sorted: the same error every time
		if len(id) == 0 || len(id) > maxKeyID {
			return nil, fmt.Errorf("envelope: key id %q must be 1 to %d bytes", id, maxKeyID)
		}
		if n := len(keys[id]); n != KeySize {
			return nil, fmt.Errorf("envelope: key %q is %d bytes; AES-256 needs %d", id, n, KeySize)
		}
		block, err := aes.NewCipher(keys[id]) // copies the key
		if err != nil {
			return nil, fmt.Errorf("envelope: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("envelope: key %q: %w", id, err)
		}
		ring[id] = aead
	}
	return ring, nil
}

func sortedIDs(keys map[string][]byte) []string {
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Seal returns what to store for plain under the Redis key key (the
// associated data of the encryption; unused without it).
//
// When nothing applies to plain (no encryption, and compression off or
// plain shorter than MinSize or not made smaller by it) Seal returns plain
// itself; otherwise it appends the envelope to dst and returns the extended
// slice. So the result may alias plain, and a caller that reuses dst must
// not assume the result is in it. dst's spare capacity must not overlap
// plain.
func (e *Envelope) Seal(dst []byte, key string, plain []byte) ([]byte, error) {
	a := e.algo
	if len(plain) < e.minSize {
		a = algoNone
	}
	if a != algoNone && len(plain) > e.maxDecoded {
		return nil, fmt.Errorf("envelope: %w to compress: %d bytes (Config.MaxDecoded is %d)", ErrTooLarge, len(plain), e.maxDecoded)
	}
	if e.keyID == "" {
		return e.sealPlain(dst, a, plain)
	}
	return e.sealEncrypted(dst, a, key, plain)
}

// sealPlain seals without encryption: compressed with a checksum, or plain.
func (e *Envelope) sealPlain(dst []byte, a algo, plain []byte) ([]byte, error) {
	start := len(dst)
	if a != algoNone {
		var err error
		if dst, err = compress(a, appendHeader(dst, a, ""), plain); err != nil {
			return nil, fmt.Errorf("envelope: %v: %w", a, err)
		}
		if len(dst)-start+crcSize < len(plain) {
			return appendCRC(dst, start), nil
		}
		dst = dst[:start]
	}
	if !IsEnveloped(plain) {
		return plain, nil
	}
	// Plain data that starts with the marker must be wrapped, or Open
	// would take it for an envelope.
	dst = appendHeader(dst, algoNone, "")
	dst = append(dst, plain...)
	return appendCRC(dst, start), nil
}

// sealEncrypted seals with the current key, compressing first when a says.
func (e *Envelope) sealEncrypted(dst []byte, a algo, key string, plain []byte) ([]byte, error) {
	aead := e.keys[e.keyID]
	start := len(dst)
	room := len(plain)
	if a == algoS2 {
		room = s2.MaxEncodedLen(len(plain))
	}
	dst = slices.Grow(dst, headerSize+1+len(e.keyID)+aead.Overhead()+room)
	dst = appendHeader(dst, a, e.keyID)
	end := len(dst)
	body := plain
	if a != algoNone {
		var err error
		if dst, err = compress(a, dst, plain); err != nil {
			return nil, fmt.Errorf("envelope: %v: %w", a, err)
		}
		if len(dst)-end < len(plain) {
			body = dst[end:] // sealed in place: Seal moves it past the nonce
		} else {
			dst[start+2] &^= flagAlgo // not worth it: store uncompressed
			dst = dst[:end]
		}
	}
	ad := associatedData(dst[start:end], key)
	dst = aead.Seal(dst[:end], nil, body, *ad)
	adPool.Put(ad)
	return dst, nil
}

// Open returns the value stored under the Redis key key.
//
// stored that does not start with the envelope marker is returned as it
// is. An envelope is opened: its value is appended to dst and the extended
// slice returned, except that an uncompressed, unencrypted value is returned
// as a subslice of stored. So the result may alias stored. dst's spare
// capacity must not overlap stored.
//
// Every error wraps ErrUndecodable.
func (e *Envelope) Open(dst []byte, key string, stored []byte) ([]byte, error) {
	if !IsEnveloped(stored) {
		return stored, nil
	}
	h, err := parseHeader(stored)
	if err != nil {
		return nil, err
	}
	if !h.encrypted {
		payload, err := checkCRC(stored, h)
		if err != nil || h.algo == algoNone {
			return payload, err
		}
		return e.decompress(h.algo, dst, payload)
	}
	aead, ok := e.keys[string(h.keyID)]
	if !ok {
		return nil, undecodable("%w %q", ErrUnknownKey, h.keyID)
	}
	sealed := stored[h.end:]
	if len(sealed) < aead.Overhead() {
		return nil, undecodable("truncated")
	}
	ad := associatedData(stored[:h.end], key)
	defer adPool.Put(ad)
	if h.algo == algoNone {
		out, err := aead.Open(dst, nil, sealed, *ad)
		if err != nil {
			return nil, undecodable("%v (a different key or Redis key, or tampered with)", err)
		}
		return out, nil
	}
	buf := scratch.get(len(sealed))
	defer scratch.put(buf)
	payload, err := aead.Open((*buf)[:0], nil, sealed, *ad)
	if err != nil {
		return nil, undecodable("%v (a different key or Redis key, or tampered with)", err)
	}
	*buf = payload
	return e.decompress(h.algo, dst, payload)
}

// adPool holds associated-data buffers: header followed by the Redis key.
var adPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func associatedData(header []byte, key string) *[]byte {
	ad := adPool.Get().(*[]byte)
	*ad = append(append((*ad)[:0], header...), key...)
	return ad
}

// scratch holds buffers for decrypted payloads that are then decompressed.
var scratch bufPool

type bufPool struct{ sync.Pool }

// maxPooled is the largest buffer kept for reuse.
const maxPooled = 4 << 20

func (p *bufPool) get(n int) *[]byte {
	if b, ok := p.Get().(*[]byte); ok && cap(*b) >= n {
		return b
	}
	b := make([]byte, 0, n)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	if cap(*b) <= maxPooled {
		p.Put(b)
	}
}
