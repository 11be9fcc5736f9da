// Package local is an in-process cache with generation fencing: a typed
// cache over ristretto v2 under a memory budget, whose installs can be
// fenced against invalidations that happen while a value is being read.
//
// The pattern it serves: take a [Stamp] of a key, read the value from a
// slower source, and [Cache.Install] it with that stamp. If the key was
// invalidated ([Cache.Invalidate]) or the cache flushed ([Cache.Flush]) in
// between, the install is refused, so a value read before a change never
// lands after it. Stamps are kept per stripe of keys, not per key, so the
// cache holds no per-key state beyond its entries; an invalidation of one
// key may refuse an install of another in its stripe, never the reverse.
//
// Installs are applied by ristretto's goroutine: an installed value
// becomes visible to Get shortly after Install returns, and the admission
// policy may refuse it. Package tiered uses the same implementation.
package local
