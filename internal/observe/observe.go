// Package observe lets a program inside this module watch what a Client
// applies, for checking consistency from outside the library (the
// consistency checker in cmd/tiered-check). It costs one atomic load per
// applied invalidation when nothing observes.
package observe

import "sync/atomic"

// InvalidatedFunc is called after a Client applied an invalidation: keys
// are the Redis keys whose in-process copies were dropped and whose
// generations moved; nil keys mean every copy (a flush after a gap or a
// FLUSHALL). It runs on the Client's invalidation goroutine and must be
// quick.
type InvalidatedFunc func(keys []string)

var invalidated atomic.Pointer[InvalidatedFunc]

// SetInvalidated installs f (nil removes it).
func SetInvalidated(f InvalidatedFunc) {
	if f == nil {
		invalidated.Store(nil)
		return
	}
	invalidated.Store(&f)
}

// Invalidated reports an applied invalidation to the observer, if any.
func Invalidated(keys []string) {
	if f := invalidated.Load(); f != nil {
		(*f)(keys)
	}
}
