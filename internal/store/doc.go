// Package store is the shared tier (L2): a store over any go-redis
// UniversalClient (single node, Sentinel failover or Cluster).
//
// Every call is bounded by the store's operation timeout, and redis.Nil
// never leaves the package: a missing key is [ErrMiss], and any other error
// means Redis could not answer, which callers must not confuse with a miss.
//
// Writes carry their values in plain SETs to a staging key that a small
// script renames into place (never as script arguments, which Redis copies
// while everyone waits). The script clears the key's load lease, refuses a
// write that arrives after its deadline in Redis's clock (so a write whose
// caller was told it failed can never land later over a newer one), and,
// where writers publish invalidations, publishes it. Value, lease and
// staging keys share a Redis Cluster hash slot, so the same scripts work on
// a cluster.
package store
