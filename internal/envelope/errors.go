package envelope

import "errors"

// Errors. Every error Open returns wraps ErrUndecodable; some also wrap
// ErrUnknownKey or ErrTooLarge to say why. A caller treats an undecodable
// value as a miss and leaves it in Redis.
var (
	// ErrUndecodable is wrapped by every Open error: the value starts with
	// the envelope marker but is truncated, tampered with, of an unknown
	// version, sealed under a different Redis key or with a different key
	// of the same id, or does not decompress.
	ErrUndecodable = errors.New("envelope: undecodable value")
	// ErrUnknownKey says the envelope names a key id that is not in the
	// keyring (or the Envelope has no keyring).
	ErrUnknownKey = errors.New("unknown key id")
	// ErrTooLarge says a value is larger than Config.MaxDecoded: Seal
	// refuses to compress it, and Open to decompress it.
	ErrTooLarge = errors.New("value too large")
)
