package tiered

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is returned by Get when neither tier holds the key. A
	// loader may return it (or an error wrapping it) to say the item does
	// not exist; Fetch then returns it and caches nothing.
	ErrNotFound = errors.New("tiered: not found")

	// ErrClosed is returned by every call on a closed Client or its caches.
	ErrClosed = errors.New("tiered: client closed")

	// ErrUnavailable is wrapped by errors that mean Redis could not be
	// reached or did not answer in time: the cache is down, which is not the
	// same as a miss.
	ErrUnavailable = errors.New("tiered: redis unavailable")

	// ErrTooLarge is returned when a value's encoding exceeds MaxValueBytes.
	ErrTooLarge = errors.New("tiered: value too large")

	// ErrLoaderPanic is wrapped by the error every waiter of a load gets
	// when the loader panics. The panic value and stack are in *PanicError.
	ErrLoaderPanic = errors.New("tiered: loader panicked")
)

// PanicError carries a panic of a loader or codec. It unwraps to
// ErrLoaderPanic and, when the panic value is an error, to that error too.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("tiered: loader panicked: %v", e.Value)
}

func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrLoaderPanic, err}
	}
	return []error{ErrLoaderPanic}
}

// unavailable marks err, from a Redis call, as ErrUnavailable.
func unavailable(op, key string, err error) error {
	return fmt.Errorf("tiered: %s %s: %w: %w", op, key, ErrUnavailable, err)
}
