// Package lock provides load leases: the fenced locks that stop a cold key
// from being loaded by every process at once, the lease of Facebook's
// memcache paper.
//
// A process that misses a key calls [Leaser.Acquire]. The one that gets the
// lease loads the value and stores it with [Lease.Fill]; the others get
// [ErrHeld] and wait for the value to appear. A fill is fenced: a write or
// delete of the key by a package remote Store (or package tiered) removes
// the lease, and the fill then stores nothing and returns [ErrLost], so a
// value loaded before a write is never cached after it. A fill never
// overwrites a value another writer put there meanwhile ([ErrExists]).
//
// Leases are stampede protection, not mutual exclusion: a lease can expire
// under a slow loader, and no Redis lock is safe across a failover.
// Correctness never depends on holding one; only the number of loads does.
package lock
