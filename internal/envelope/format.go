package envelope

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The header; doc.go describes it byte by byte.
const (
	marker  = 0xFF
	version = 0x01

	flagAlgo      = 0x03 // bits 0-1: the algo
	flagEncrypted = 0x04
	flagReserved  = 0xF8

	headerSize = 3 // marker, version, flags
	crcSize    = 4
	maxKeyID   = 255
)

// algo is a compression algorithm, numbered as in the flags byte.
type algo uint8

const (
	algoNone algo = 0
	algoS2   algo = 1
	algoZstd algo = 2
)

var algoNames = map[string]algo{"": algoNone, "s2": algoS2, "zstd": algoZstd}

func (a algo) String() string {
	switch a {
	case algoNone:
		return "none"
	case algoS2:
		return "s2"
	case algoZstd:
		return "zstd"
	}
	return fmt.Sprintf("algo(%d)", uint8(a))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// IsEnveloped reports whether b starts with the envelope marker, that is
// whether Open will open it rather than pass it through. No JSON text does.
func IsEnveloped(b []byte) bool { return len(b) > 0 && b[0] == marker }

// appendHeader appends the header of an envelope: marker, version, flags
// and, when keyID is not empty, the encrypted flag and the key id.
func appendHeader(dst []byte, a algo, keyID string) []byte {
	flags := byte(a)
	if keyID == "" {
		return append(dst, marker, version, flags)
	}
	dst = append(dst, marker, version, flags|flagEncrypted, byte(len(keyID)))
	return append(dst, keyID...)
}

// appendCRC appends the checksum of dst[start:], ending an unencrypted
// envelope that starts at start.
func appendCRC(dst []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// header is a parsed envelope header.
type header struct {
	algo      algo
	encrypted bool
	keyID     []byte // encrypted only
	end       int    // offset of the payload or the nonce
}

// parseHeader parses the header of b, which starts with the marker.
func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, undecodable("truncated header")
	}
	if b[1] != version {
		return header{}, undecodable("unsupported version %d", b[1])
	}
	flags := b[2]
	h := header{algo: algo(flags & flagAlgo), encrypted: flags&flagEncrypted != 0, end: headerSize}
	if flags&flagReserved != 0 || h.algo > algoZstd {
		return header{}, undecodable("invalid flags %#02x", flags)
	}
	if !h.encrypted {
		return h, nil
	}
	if len(b) < headerSize+1 {
		return header{}, undecodable("truncated header")
	}
	n := int(b[headerSize])
	h.end = headerSize + 1 + n
	if n == 0 || len(b) < h.end {
		return header{}, undecodable("truncated key id")
	}
	h.keyID = b[headerSize+1 : h.end]
	return h, nil
}

// checkCRC verifies the checksum ending the unencrypted envelope b and
// returns the payload.
func checkCRC(b []byte, h header) ([]byte, error) {
	end := len(b) - crcSize
	if end < h.end {
		return nil, undecodable("truncated")
	}
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return nil, undecodable("checksum mismatch")
	}
	return b[h.end:end], nil
}

func undecodable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUndecodable}, args...)...)
}
