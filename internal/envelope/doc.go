// Package envelope wraps cached values for optional compression and
// encryption, per cache and opt-in: by default values stay plain JSON, which
// every reader of the shared Redis (the Python template included) can read.
//
// An [Envelope] seals a value before it is written ([Envelope.Seal]) and
// opens what was read ([Envelope.Open]). Open passes through, unchanged, any
// value that does not start with the envelope marker, so plain JSON written
// by the Python template, or before compression was turned on, still reads.
// Seal leaves a value plain when nothing applies to it (compression off or
// the value under the size threshold, and no encryption).
//
// # Format
//
// An enveloped value is, byte by byte:
//
//	offset  size  field
//	0       1     marker 0xFF
//	1       1     version 0x01
//	2       1     flags: bits 0-1 compression (0 none, 1 s2 block, 2 zstd
//	              frame; 3 is invalid), bit 2 encrypted, bits 3-7 zero
//	unencrypted (bit 2 clear):
//	3       n     payload: the value, compressed as the flags say
//	3+n     4     CRC-32C (Castagnoli) of all the bytes before it, big-endian
//	encrypted (bit 2 set):
//	3       1     k, the length of the key id (1 to 255)
//	4       k     key id, naming the key in the keyring that sealed the value
//	4+k     12    nonce, random (crypto/rand)
//	16+k    n     AES-256-GCM ciphertext of the payload (the value, compressed
//	              as the flags say: compression comes before encryption)
//	16+k+n  16    GCM tag
//
// The associated data of the encryption is the header, bytes 0 to 3+k
// (marker, version, flags and key id), followed by the value's full Redis
// key. A ciphertext copied under another key, or another tenant's key, and
// any change to the header or body, fail to open. An unencrypted envelope is protected by its
// CRC against accidents only, not against someone who can write to Redis.
//
// # Why 0xFF
//
// The first byte must be one no JSON reader accepts, so that a reader which
// does not know the envelope treats the value as unreadable rather than as
// data. A JSON text starts, after optional whitespace (space, tab, CR, LF),
// with one of { [ " - 0-9 t f n; 0x00 and 0xFF are neither. 0xFF is chosen
// over 0x00 because 0xFF never occurs in UTF-8, so the value is not even
// text: a UTF-8 decoder fails on its first byte (redis-py with
// decode_responses, Python's bytes.decode), json.loads raises, and Pydantic's
// model_validate_json raises ValidationError. 0x00 is valid UTF-8 (NUL), and
// Python's json.loads would take a leading zero byte as the sign of UTF-16 or
// UTF-32 text and decode the value in that encoding. For the same reason the
// version byte is neither 0x00 nor 0xFE: json.loads reads FF FE as a UTF-16
// byte order mark and a zero second byte as UTF-16 little-endian text.
//
// The Python template therefore counts an enveloped value as a miss, loads the
// data itself and overwrites the key with plain JSON, which this package then
// passes through. A cache shared with the template gains little from the
// envelope on keys both sides write.
//
// The marker alone identifies an envelope: every value starting with 0xFF
// is opened as one, and fails with [ErrUndecodable] if it is not a valid one.
// Seal wraps a plain value that itself starts with 0xFF (no JSON does, but a
// custom codec might) in an uncompressed envelope, so a sealed value always
// opens to exactly what was sealed. (A value that such a codec wrote before
// the cache used an Envelope, a gob message of 128 to 255 bytes say, then
// reads as undecodable: a miss, reloaded once.)
//
// # Compression
//
// s2 (a faster snappy; its default block encoder) or zstd (its fastest
// level), from github.com/klauspost/compress, for values of at least
// [Config.MinSize] bytes, and only when it makes the value smaller. On
// user-like JSON, s2 stores about 30% of the bytes and zstd 19%; zstd takes
// about three times as long as s2 to seal and twice as long to open (1 MiB:
// about 1.5 and 4-5 ms to seal, 0.5 and 1 ms to open, on a loaded 2-core
// machine; AES-GCM adds about 0.3 ms per MiB it encrypts). Open reads every
// algorithm whatever the configuration says, so the algorithm can be
// changed at any time.
//
// Decompression is bounded by [Config.MaxDecoded]: a small value that
// claims, or turns out, to decode to more fails with [ErrTooLarge], having
// allocated at most about MaxDecoded bytes (usually nothing: the sizes
// recorded in s2 blocks and zstd frames are checked first). One zstd
// encoder is shared by the process, and one decoder by every Envelope with
// the same MaxDecoded; each runs at most GOMAXPROCS operations at once, and
// further callers wait for one to finish.
//
// # Encryption
//
// AES-256-GCM from the standard library, with random 96-bit nonces
// ([crypto/cipher.NewGCMWithRandomNonce]). The keyring holds several keys by
// id; Seal uses [Config.KeyID] and Open whichever key the envelope names, so
// keys rotate by adding the new key, making it current, and removing the old
// one once values sealed under it have expired. With random nonces a key
// must seal fewer than about 2^32 values (NIST SP 800-38D); count writes
// across every process that shares the key and rotate well before that (at
// 10,000 writes a second, 2^32 is five days).
//
// Encryption keeps values confidential and bound to their key. It does not
// stop someone who can write to Redis from planting a plain value: plain JSON
// always reads, as the template's values must.
package envelope
