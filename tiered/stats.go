package tiered

import (
	"sync/atomic"
	"unsafe"
)

// counter is a monotonically increasing count.
type counter struct{ n atomic.Uint64 }

func (c *counter) inc()         { c.n.Add(1) }
func (c *counter) add(d uint64) { c.n.Add(d) }
func (c *counter) load() uint64 { return c.n.Load() }
func (s *stripedCounter) load() uint64 {
	var n uint64
	for i := range s.shards {
		n += s.shards[i].n.Load()
	}
	return n
}

// stripedCounter spreads increments over cache lines so that goroutines on
// different cores counting hits do not contend for one.
type stripedCounter struct {
	shards [16]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

// inc adds one to the shard that the calling goroutine's stack picks:
// goroutines running at once have stacks of their own, so each keeps
// to its own shard, whose cache line then stays with its core, and
// picking costs no more than a multiplication (a random shard cost more
// than the addition, and sent each line back and forth between cores).
func (s *stripedCounter) inc() {
	var onStack byte
	p := uint64(uintptr(unsafe.Pointer(&onStack)))
	s.shards[(p*0x9e3779b97f4a7c15)>>60].n.Add(1) // Fibonacci hashing: top 4 bits
}

// cacheCounters are one Cache's counts.
type cacheCounters struct {
	hitsL1        stripedCounter
	hitsL2        counter
	misses        counter
	loads         counter
	loadErrors    counter
	coalesced     counter
	leasesWon     counter
	leasesWaited  counter
	leaseLost     counter
	waitExpired   counter
	decodeErrors  counter
	fillsRefused  counter
	tooLarge      counter
	degradedLoads counter
	negativeHits  counter
	staleServed   counter
	refreshes     counter
	refreshErrors counter
	refetches     counter
}

// CacheStats is a snapshot of one Cache's counters since it was made.
type CacheStats struct {
	Resource string
	// HitsL1 and HitsL2 count reads served by each tier.
	HitsL1, HitsL2 uint64
	// Misses counts reads that found the key in neither tier.
	Misses uint64
	// Loads counts loader calls; LoadErrors those that failed or panicked.
	Loads, LoadErrors uint64
	// Coalesced counts callers that shared another caller's load in this
	// process.
	Coalesced uint64
	// LeasesWon counts loads this process ran under a cross-process lease;
	// LeasesWaited, loads it waited for because another process held one.
	LeasesWon, LeasesWaited uint64
	// LeaseLost counts loaded values not cached because a write or delete
	// of the key came first.
	LeaseLost uint64
	// WaitExpired counts waits for another process's load that ran out, so
	// this process loaded the value itself.
	WaitExpired uint64
	// DecodeErrors counts values in Redis that did not decode, read as
	// misses and left in place (another service may have written them);
	// TooLarge, values not written because of MaxValueBytes.
	DecodeErrors, TooLarge uint64
	// FillsRefused counts loaded values not stored because another writer
	// (one that takes no lease, like another service) wrote the key first.
	FillsRefused uint64
	// DegradedLoads counts loads run without Redis because it failed.
	DegradedLoads uint64
	// NegativeHits counts reads answered ErrNotFound by a cached absence
	// (NegativeTTL).
	NegativeHits uint64
	// StaleServed counts Fetch hits on a value past its TTL (ServeStale);
	// Refreshes, background refreshes this process ran (EarlyRefresh,
	// ServeStale); RefreshErrors, those whose load failed.
	StaleServed, Refreshes, RefreshErrors uint64
	// Refetches counts keys read again from Redis after a reported change
	// (Options.RefetchInvalidated), counted once the read is over.
	Refetches uint64
}

func (c *cacheCounters) snapshot(resource string) CacheStats {
	return CacheStats{
		Resource: resource,
		HitsL1:   c.hitsL1.load(), HitsL2: c.hitsL2.load(), Misses: c.misses.load(),
		Loads: c.loads.load(), LoadErrors: c.loadErrors.load(), Coalesced: c.coalesced.load(),
		LeasesWon: c.leasesWon.load(), LeasesWaited: c.leasesWaited.load(),
		LeaseLost: c.leaseLost.load(), WaitExpired: c.waitExpired.load(),
		DecodeErrors: c.decodeErrors.load(), FillsRefused: c.fillsRefused.load(), TooLarge: c.tooLarge.load(), DegradedLoads: c.degradedLoads.load(),
		NegativeHits: c.negativeHits.load(), StaleServed: c.staleServed.load(),
		Refreshes: c.refreshes.load(), RefreshErrors: c.refreshErrors.load(),
		Refetches: c.refetches.load(),
	}
}

// clientCounters are counts shared by a Client's caches.
type clientCounters struct {
	published, received, malformed counter
	flushGap, flushDown, flushAll  counter
	l1Evicted, l1Rejected          counter
	redisErrors                    [len(redisOps)]counter
	breakerOpened, breakerRejected counter
	lostInvalidations, replayed    counter
	refetchesSkipped               counter
}

// redisOps are the Redis operations whose failures are counted.
var redisOps = [...]string{"get", "mget", "set", "delete", "lease", "fill", "release", "wait", "replay"}

func (c *clientCounters) redisError(op string) {
	for i, o := range redisOps {
		if o == op {
			c.redisErrors[i].inc()
			return
		}
	}
	panic("tiered: unknown redis operation " + op)
}

func (c *clientCounters) redisErrorTotal() uint64 {
	var n uint64
	for i := range c.redisErrors {
		n += c.redisErrors[i].load()
	}
	return n
}

// Stats is a snapshot of a Client's counters.
type Stats struct {
	// RedisUp reports whether the invalidation subscription is confirmed:
	// while it is not, the in-process tier keeps values only DegradedTTL.
	RedisUp bool
	// InvalidationMode is how this process learns of changes: "tracking"
	// (Redis reports every modified key), "pubsub" (only the messages
	// writers publish), or "" without Redis or before the first
	// subscription.
	InvalidationMode string
	// InvalidationsPublished, InvalidationsReceived and MalformedMessages
	// count bus traffic; received counts invalidations applied from Redis
	// tracking and messages from other processes.
	InvalidationsPublished, InvalidationsReceived, MalformedMessages uint64
	// FlushesGap counts in-process flushes after a subscription gap;
	// FlushesDown, flushes when the subscription was lost; FlushesAll,
	// flushes for a FLUSHALL or FLUSHDB reported by Redis.
	FlushesGap, FlushesDown, FlushesAll uint64
	// L1Evicted, L1Rejected and L1Dropped count in-process entries evicted
	// for room, refused by the admission policy, and dropped because
	// ristretto's write buffer was full.
	L1Evicted, L1Rejected, L1Dropped uint64
	// L1Bytes is the in-process tier's accounted size.
	L1Bytes int64
	// RedisErrors counts failed Redis calls.
	RedisErrors uint64
	// BreakerOpen reports whether the circuit breaker is open; BreakerOpened
	// counts how often it opened; BreakerRejections, the calls it refused.
	BreakerOpen                      bool
	BreakerOpened, BreakerRejections uint64
	// PendingInvalidations counts keys whose Set or Delete failed on Redis
	// and whose invalidation waits to be replayed when Redis returns;
	// ReplayedInvalidations, those replayed; LostInvalidations, those
	// dropped because MaxPendingInvalidations was reached.
	PendingInvalidations                     int
	ReplayedInvalidations, LostInvalidations uint64
	// RefetchesSkipped counts changed keys in use here that were only
	// dropped, not read again, because 64 refetches were under way
	// (Options.RefetchInvalidated).
	RefetchesSkipped uint64
	// Caches holds one entry per Cache, in creation order.
	Caches []CacheStats
}
