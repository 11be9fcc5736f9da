package envelope

import (
	"errors"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// zstdEncoder is the process's one zstd encoder. EncodeAll is safe for
// concurrent use and runs at most GOMAXPROCS encodes at once; it starts no
// goroutines, so it needs no Close.
//
// It runs at the fastest level: on user-like JSON that stores about 3% more
// than the default level for a third to a fifth of the CPU, and a cache
// writes often.
var zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(0), // GOMAXPROCS
		zstd.WithEncoderCRC(false),     // the CRC-32C or the GCM tag covers it
		zstd.WithSingleSegment(true),   // always records the content size
	)
})

// zstdDecoders holds one decoder per decoded-size limit, shared by every
// Envelope with that limit. DecodeAll is safe for concurrent use and runs at
// most GOMAXPROCS decodes at once; without streaming the decoder starts no
// goroutines, so it needs no Close. There are as many entries as distinct
// Config.MaxDecoded values, which a process has few of.
var zstdDecoders struct {
	sync.Mutex
	m map[int]*zstd.Decoder
}

func zstdDecoder(limit int) (*zstd.Decoder, error) {
	zstdDecoders.Lock()
	defer zstdDecoders.Unlock()
	if d := zstdDecoders.m[limit]; d != nil {
		return d, nil
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0), // GOMAXPROCS
		zstd.WithDecoderMaxMemory(uint64(limit)),
		zstd.WithDecoderMaxWindow(uint64(max(limit, zstd.MinWindowSize))),
	)
	if err != nil {
		return nil, err
	}
	if zstdDecoders.m == nil {
		zstdDecoders.m = make(map[int]*zstd.Decoder)
	}
	zstdDecoders.m[limit] = d
	return d, nil
}

// compress appends src compressed with a to dst.
func compress(a algo, dst, src []byte) ([]byte, error) {
	switch a {
	case algoS2:
		n := s2.MaxEncodedLen(len(src))
		dst = slices.Grow(dst, n)
		out := s2.Encode(dst[len(dst):len(dst)+n], src)
		return dst[:len(dst)+len(out)], nil
	case algoZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, err
		}
		return enc.EncodeAll(src, dst), nil
	}
	return append(dst, src...), nil
}

// decompress appends src decompressed with a to dst, refusing to produce
// more than limit bytes.
func (e *Envelope) decompress(a algo, dst, src []byte) ([]byte, error) {
	switch a {
	case algoS2:
		n, err := s2.DecodedLen(src)
		if err != nil {
			return nil, undecodable("s2: %v", err)
		}
		if n > e.maxDecoded {
			return nil, tooLarge(e.maxDecoded)
		}
		dst = slices.Grow(dst, n)
		if _, err := s2.Decode(dst[len(dst):len(dst)+n], src); err != nil {
			return nil, undecodable("s2: %v", err)
		}
		return dst[:len(dst)+n], nil
	case algoZstd:
		// The encoder always records the content size; checking it first
		// rejects what it did not write before the decoder allocates.
		var h zstd.Header
		if err := h.Decode(src); err != nil {
			return nil, undecodable("zstd: %v", err)
		}
		if !h.HasFCS {
			return nil, undecodable("zstd: frame without content size")
		}
		if h.FrameContentSize > uint64(e.maxDecoded) {
			return nil, tooLarge(e.maxDecoded)
		}
		dec, err := e.zstd()
		if err != nil {
			return nil, undecodable("zstd: %v", err)
		}
		// The decoder's limit counts what dst already holds, so decode
		// into its spare capacity and join the two.
		out, err := dec.DecodeAll(src, dst[len(dst):])
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, tooLarge(e.maxDecoded)
		}
		if err != nil {
			return nil, undecodable("zstd: %v", err)
		}
		if len(dst) == 0 {
			return out, nil
		}
		if len(out) <= cap(dst)-len(dst) && len(out) > 0 && &out[0] == &dst[:len(dst)+1][len(dst)] {
			return dst[:len(dst)+len(out)], nil
		}
		return append(dst, out...), nil
	}
	return append(dst, src...), nil
}

func tooLarge(limit int) error {
	return undecodable("%w: decodes to more than %d bytes (Config.MaxDecoded)", ErrTooLarge, limit)
}
