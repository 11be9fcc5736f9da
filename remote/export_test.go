package remote

// Test hooks: internals the black-box tests check against.
const (
	MaxMessageBytes = maxMessageBytes
	MaxMessageKeys  = maxMessageKeys
	MaxKeyBytes     = maxKeyBytes
)

var EncodeMessages = encodeMessages

// Up reports whether the bus is up: Up was reported, and Down not since.
func (b *Bus) Up() bool { return b.up.Load() }
