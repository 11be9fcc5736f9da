// Package wire is the invalidation bus's wire format, which any service in any
// language can publish; package remote documents it for users.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Message kinds.
const (
	// KindInvalidate says the keys changed: drop any local copy.
	KindInvalidate = "invalidate"
	// KindFill says the keys were just loaded into Redis by a lease holder:
	// drop any local copy and wake processes waiting for them.
	KindFill = "fill"
)

// Limits on bus messages: 1 MiB, 10,000 keys, keys and origins of 4 KiB.
// A message over them is malformed.
const (
	MaxBytes    = 1 << 20
	MaxKeys     = 10000
	MaxKeyBytes = 4096
)

// ErrMalformed is wrapped by every Decode error.
var ErrMalformed = errors.New("remote: malformed bus message")

// Message is one invalidation on the bus. On the wire it is JSON, so any
// service, in any language, can publish one:
//
//	{"origin":"api-7f9c","kind":"invalidate","keys":["app:tenant-global:user:42:v1"]}
type Message struct {
	// Origin identifies the publishing process; a process ignores its own.
	// It is encoded first, so that a process recognises its own messages
	// by their beginning, without decoding them.
	Origin string `json:"origin"`
	// Kind is KindInvalidate (the default when empty) or KindFill. Unknown
	// kinds are treated as KindInvalidate: dropping a copy is always safe.
	Kind string `json:"kind,omitempty"`
	// Keys are the full Redis keys concerned.
	Keys []string `json:"keys"`
}

// Encode returns the wire form of m.
func Encode(m Message) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// EncodeAll returns the wire form of m split into as many messages as
// needed to keep each within MaxKeys keys and MaxBytes bytes.
func EncodeAll(m Message) ([][]byte, error) {
	if len(m.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrMalformed)
	}
	// Sizes as encoding/json writes them: it escapes <, > and & as \u003c
	// and the like, so a key may grow sixfold.
	origin, err := json.Marshal(m.Origin)
	if err != nil {
		return nil, err
	}
	budget := MaxBytes - len(origin) - len(m.Kind) - 64
	var out [][]byte
	for start := 0; start < len(m.Keys); {
		end, size := start, 0
		for end < len(m.Keys) && end-start < MaxKeys {
			k, err := json.Marshal(m.Keys[end])
			if err != nil {
				return nil, err
			}
			if end > start && size+len(k)+1 > budget {
				break
			}
			size += len(k) + 1
			end++
		}
		b, err := Encode(Message{Origin: m.Origin, Kind: m.Kind, Keys: m.Keys[start:end]})
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		start = end
	}
	return out, nil
}

// Decode parses and validates the wire form of a message.
func Decode(data []byte) (Message, error) {
	var m Message
	if len(data) > MaxBytes {
		return m, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(data), MaxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Message{}, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := m.validate(); err != nil {
		return Message{}, err
	}
	if m.Kind == "" {
		m.Kind = KindInvalidate
	}
	return m, nil
}

func (m Message) validate() error {
	switch {
	case m.Origin == "":
		return fmt.Errorf("%w: no origin", ErrMalformed)
	case len(m.Origin) > MaxKeyBytes:
		return fmt.Errorf("%w: origin longer than %d bytes", ErrMalformed, MaxKeyBytes)
	case len(m.Keys) == 0:
		return fmt.Errorf("%w: no keys", ErrMalformed)
	case len(m.Keys) > MaxKeys:
		return fmt.Errorf("%w: %d keys, limit %d", ErrMalformed, len(m.Keys), MaxKeys)
	}
	for _, k := range m.Keys {
		if k == "" || len(k) > MaxKeyBytes {
			return fmt.Errorf("%w: key of %d bytes", ErrMalformed, len(k))
		}
	}
	return nil
}
