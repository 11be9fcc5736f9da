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
//	u, err := users.Fetch(ctx, id, func(ctx context.Context) (User, error) {
//		return db.User(ctx, id)
//	})
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
// on the invalidation channel. The lease holder stores the value with a
// script that writes it only if the lease still holds.
//
// # Write path
//
// Set and Delete change Redis, remove the key's lease, and publish an
// invalidation in one atomic script; every other process drops its
// in-process copy when the message arrives.
//
// # Consistency
//
//   - In one process: read-your-writes.
//   - Across processes: another process's in-process copy is dropped within
//     one pub/sub delivery after Set or Delete returns. A subscription gap
//     (reconnect) flushes the in-process tier, since messages sent during the
//     gap are lost; a silent subscription is detected by pings within two
//     HealthCheckInterval.
//   - A value loaded while the key was written or deleted is returned to its
//     callers but never cached (the lease check), and a slow installer cannot
//     resurrect a value invalidated while it was loading (generation stamps).
//   - With Redis unreachable, reads are served by the loader, still one load
//     per key per process, and the in-process tier keeps values at most
//     DegradedTTL: correctness over hit ratio.
//
// Values in the in-process tier are shared by every reader: treat them as
// immutable.
package tiered
