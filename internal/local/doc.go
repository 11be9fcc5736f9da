// Package local is the in-process tier (L1): a typed wrapper over ristretto
// v2 holding decoded values under a byte budget.
//
// Keys are hashed once by the caller ([Cache.Hash]) and looked up by hash;
// each entry keeps its full key, so a hash collision reads as a miss, never
// as another key's value. A lookup with a key held in a caller's buffer does
// not allocate.
//
// Two mechanisms keep a slow installer from resurrecting a value that was
// invalidated while it was loading:
//
//   - Generation stamps. Keys are spread over a fixed array of stripes, each
//     with a generation counter. A loader takes a [Stamp] before it reads the
//     remote tier; [Cache.Invalidate] bumps the stripe's generation; and
//     [Cache.Install] stores the value only if the stamp is still current.
//     The check and the store happen under the stripe's lock, which
//     Invalidate also takes, so no interleaving can reinsert a stale value.
//     (ristretto applies a Set of a new key asynchronously and a Set after a
//     Del re-inserts, so Del alone is not enough.)
//   - An epoch. [Cache.Flush] bumps it in O(1); entries installed under an
//     older epoch read as misses. It is how a subscription gap drops every
//     entry at once.
//
// ristretto may drop or reject any Set (that is its admission policy), so
// Install is best effort: callers must treat the L1 as a cache.
package local
