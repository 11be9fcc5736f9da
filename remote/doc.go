// Package remote is the shared tier (L2): a store over any go-redis
// UniversalClient (single node, Sentinel failover, Ring or Cluster), the
// codec that turns values into the plain JSON other services read, and the
// invalidation bus that tells every process when a key changed.
//
// Every Store call is bounded by the store's operation timeout, and
// redis.Nil never leaves the package: a missing key is [ErrMiss], and any
// other error means Redis could not answer, which callers must not confuse
// with a miss.
//
// Writes carry their values in plain SETs to a staging key that a small
// script renames into place (never as script arguments, which Redis copies
// while everyone waits). The script clears the key's load lease, refuses a
// write that arrives after its deadline in Redis's clock (so a write whose
// caller was told it failed can never land later over a newer one), and,
// where writers publish invalidations, publishes it. Value, lease and
// staging keys share a Redis Cluster hash slot, so the same scripts work on
// a cluster.
//
// The [Bus] learns of changes from Redis itself where it can: server-assisted
// client tracking in broadcast mode, on one connection per master, reports
// every write under the key prefix by any client, every expiry, eviction and
// flush. It also carries the app channel, a documented JSON wire format that
// other services may publish on, and falls back to it alone where tracking
// is refused (Redis before 6, an ACL without CLIENT, miniredis). It confirms
// every connection before it reports ready, pings to detect a dead or hung
// one, and reports every gap, because invalidations sent while a connection
// is away are lost: its user must then assume that anything it cached may
// be stale.
package remote
