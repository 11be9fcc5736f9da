// Package lock provides the cross-process load leases that stop a cold key
// from being loaded by every process at once.
//
// A lease is a short-lived redislock lock on a key beside the value key
// ([Key]). The process that obtains it loads the value and stores it with
// [Lease.Fill], which writes the value only if the lease still holds: a
// write or delete of the key meanwhile removes the lease (the remote store's
// scripts do that), so a value loaded before that write is returned to its
// callers but never cached. This is the lease of Facebook's memcache paper.
//
// Leases are stampede protection, not mutual exclusion: a lease can expire
// under a slow loader, and redislock is not safe across a Redis failover.
// Correctness never depends on holding one; only the number of loads does.
package lock
