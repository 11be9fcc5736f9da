// Package tiered is a two-tier cache with stampede protection for Go
// services: an in-process tier (ristretto) in front of a shared Redis tier,
// with key layout, JSON values and metric names shared with the Python
// FastAPI template it interoperates with.
//
// # Use
//
// Make one [Client] per process and one [Cache] per resource type:
//
//	client, err := tiered.New(tiered.Options{Redis: rdb, Keys: kb})
//	users, err := tiered.NewCache[User](client, "user")
//	u, err := users.Fetch(ctx, id, db.User) // db.User(ctx, id) loads on a miss
//
// # Read path
//
// A read builds the key ({prefix}:tenant-{tenant}:{resource}:{id}:{version}),
// then looks in the in-process tier, which holds decoded values: a hit there
// neither allocates nor decodes. On a miss, callers for the same key in this
// process join one load (singleflight), each waiting only as long as its own
// context allows. The load reads Redis; on a Redis miss it takes a lease (a
// short-lived lock beside the key) so that one process in the fleet runs the
// loader while the others wait for its result, woken by a fill notification
// by Redis's report of the key's change. The lease holder stores the value
// with a small script that writes it only if the lease still holds and no
// other writer stored the key meanwhile.
//
// # Write path
//
// Set and Delete change Redis and remove the key's lease; Redis itself
// reports the change to every process (client tracking), which drops its
// in-process copy when the report arrives. Reports of other writers (the
// Python service, expiry, eviction) arrive the same way.
//
// # Consistency
//
//   - In one process: read-your-writes, strictly; a read never joins a load
//     that began before a write or an applied invalidation of its key.
//   - Across processes: a copy is dropped within one delivery of Redis's
//     report after any write returns, whoever made it, and never outlives
//     its TTL in Redis. A gap (reconnect, failover, topology change) flushes
//     the in-process tier.
//   - A value loaded while the key was written or deleted is returned to its
//     callers but never cached, and a slow installer cannot resurrect a
//     value invalidated while it was loading (generation stamps). A failed
//     Set never lands in Redis later (a deadline in Redis's clock).
//   - With Redis unreachable, reads are served by the loader, still one load
//     per key per process, and the in-process tier keeps values at most
//     DegradedTTL: correctness over hit ratio.
//
// Values in the in-process tier are shared by every reader: treat them as
// immutable.
package tiered
