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
// Writes that must reach other processes run as one Lua script that changes
// the value, clears the key's load lease and publishes the invalidation, so
// a write is never visible in Redis without its invalidation having been
// sent. Value key and lease key share a Redis Cluster hash slot, so the same
// scripts work on a cluster.
//
// The [Bus] owns one subscription and one goroutine. It confirms the
// subscription before it reports ready, pings to detect a dead or hung
// connection, and reports every subscription gap, because messages published
// while a subscriber is away are lost: its user must then assume that
// anything it cached may be stale.
package remote
