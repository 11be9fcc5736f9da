package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
)

// entryOverhead is the estimated memory, in bytes, that one entry costs
// beyond its key and value: the entry itself, ristretto's store item and
// map slot, and its admission and eviction bookkeeping. It is added to the
// cost of every Install so that MaxBytes bounds memory, not just payload.
// Measured on ristretto v2.4.2 at a million entries: the entry 64 bytes,
// ristretto's map about 130, its cost map about 37; a few more go to size
// classes rounding keys and values up.
const entryOverhead = 224

const numStripes = 4096

// Config configures a Cache.
type Config struct {
	// MaxBytes is the memory budget in bytes. Required. It bounds the whole
	// tier: ristretto's fixed structures (admission counters, Bloom filter)
	// and map slack are reserved from it, entries get the rest.
	MaxBytes int64

	// Counters is the number of admission counters ristretto keeps; about
	// ten per entry the budget holds is ideal. Default: MaxBytes/64.
	Counters int64

	// Seed keys the lookup hash (Hash, HashString). Default: a new one.
	// Sharing it lets a caller hash keys the same way without the cache.
	Seed maphash.Seed

	// OnEvict, if set, is called when the policy evicts an entry to make
	// room. OnReject, if set, is called when the policy refuses a new entry.
	// Both run on ristretto's goroutine and must be quick.
	OnEvict  func()
	OnReject func()

	// TrackUse makes Replace find out whether the entries it drops were
	// in use (see InvalidateRead), which costs it a lookup per key.
	TrackUse bool
}

// recentShare is the share of the budget (1/recentShare) set aside for
// the stripes' recent entries, which ristretto may not hold.
const recentShare = 32

// Memory ristretto spends outside its entries, measured on ristretto
// v2.4.2: about 4 bytes per admission counter (count-min sketch, Bloom
// filter, sampled policy), and up to 1/32 of the entries' size in map
// slack as they churn.
const (
	bytesPerCounter = 4
	slackDivisor    = 32
)

// entryBudget is what remains of maxBytes for entries once ristretto's own
// structures are paid for; never less than half the budget.
func entryBudget(maxBytes, counters int64) int64 {
	return max(maxBytes-bytesPerCounter*counters-maxBytes/slackDivisor, maxBytes/2)
}

// Stamp records a key's stripe generation and the cache epoch at one moment.
type Stamp struct {
	gen, epoch uint64
	// inUse is set by Replace when the entry it dropped had been returned
	// by a lookup: an Install under the stamp counts as read already (see
	// InvalidateRead), as the value it replaces did.
	inUse bool
}

// follows reports whether s was taken right after exactly n Invalidates
// of the stripe that prev was taken of, with no Flush between.
func (s Stamp) follows(prev Stamp, n uint64) bool {
	return s.epoch == prev.epoch && s.gen == prev.gen+n
}

// Within reports whether s was taken after at most n Invalidates of the
// stripe that prev was taken of, with no Flush between.
func (s Stamp) Within(prev Stamp, n uint64) bool {
	return s.epoch == prev.epoch && s.gen-prev.gen <= n
}

// AppendTo appends a compact encoding of s to dst: two stamps append the
// same bytes exactly when they are equal, so work can be keyed by the
// generation it started from.
func (s Stamp) AppendTo(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, s.gen)
	return binary.LittleEndian.AppendUint64(dst, s.epoch)
}

// stripeOf returns the stripe of the key whose hash is h: keys of one
// stripe share a generation.
func stripeOf(h uint64) int { return int((h >> 32) % numStripes) }

type entry[V any] struct {
	key     string
	val     V
	epoch   uint64
	expires int64 // on the coarse clock; 0: never
	// gen is a generation of the entry's stripe at which the entry was
	// known to be current: it was installed then, or a lookup found no
	// invalidation of its key since.
	gen atomic.Uint64
	// read says a lookup returned the entry: the key is in use here.
	read atomic.Bool
}

type stripe[V any] struct {
	mu  sync.Mutex
	gen atomic.Uint64
	// invalidated holds the hashes of the stripe's last invalidations, the
	// one that moved gen to g at g%len. A lookup checks an entry installed
	// at an older generation against it: ristretto applies an insert
	// asynchronously, so one queued before an Invalidate can land after
	// the Invalidate's delete.
	invalidated [ringSize]atomic.Uint64
	// recent is the last entry installed in the stripe, readable at once:
	// ristretto applies a new key asynchronously, so without it a key just
	// refilled after an invalidation would miss again until then. Only
	// entries of up to recentMax bytes are kept here.
	recent atomic.Pointer[entry[V]]
}

// ringSize is how many of a stripe's invalidations a lookup can check an
// entry against; an entry older than that many reads as a miss.
const ringSize = 8

// current reports whether no invalidation of the key whose hash is h came
// after e's generation, and if so moves e's generation forward, so the
// next lookup of e costs one comparison. It errs on the side of a miss.
func (st *stripe[V]) current(e *entry[V], h uint64) bool {
	eg, now := e.gen.Load(), st.gen.Load()
	if eg == now {
		return true
	}
	if now-eg > ringSize {
		return false
	}
	for g := eg + 1; g <= now; g++ {
		if st.invalidated[g%ringSize].Load() == h {
			return false
		}
	}
	// The ring slots read may have been reused meanwhile.
	if st.gen.Load()-eg > ringSize {
		return false
	}
	e.gen.CompareAndSwap(eg, now)
	return true
}

// gate counts operations under way in ristretto, so that Close can wait
// for them before closing it: ristretto is not safe to close under
// concurrent use. It is padded to a cache line's size, so that no two
// gates' counters share a line.
type gate struct {
	busy atomic.Int32
	_    [60]byte
}

// numGates is the number of gates; a power of two.
const numGates = 64

// enter admits an operation on ristretto and returns the gate to leave
// by, or nil if the cache is closed. Close sets closed before it reads the
// gates, and an operation counts itself before it reads closed, so either
// Close waits for it or it sees closed and stays out.
func (c *Cache[V]) enter() *gate {
	g := &c.gates[gateIndex()]
	g.busy.Add(1)
	if c.closed.Load() {
		g.busy.Add(-1)
		return nil
	}
	return g
}

// leave ends an operation that enter admitted through g.
func (g *gate) leave() { g.busy.Add(-1) }

// gateIndex picks the gate of the calling goroutine by the address of its
// stack. Goroutines running at once have stacks of their own, so each
// keeps to its own gate, whose cache line then stays with its core, even
// when they all read one key: a gate per key or per stripe would bounce
// between the cores on every lookup of a hot key. Picking costs a
// multiplication (Fibonacci hashing: the top bits of the product).
func gateIndex() uint64 {
	var onStack byte
	return uint64(uintptr(unsafe.Pointer(&onStack))) * 0x9e3779b97f4a7c15 >> (64 - 6)
}

// Cache is the in-process tier. It is safe for concurrent use.
type Cache[V any] struct {
	rc        *ristretto.Cache[uint64, *entry[V]]
	seed      maphash.Seed
	epoch     atomic.Uint64
	dropped   atomic.Uint64
	closed    atomic.Bool
	gates     [numGates]gate // of the operations under way in ristretto
	stripes   [numStripes]stripe[V]
	recentMax int64 // largest cost an entry may have to be kept as recent
	trackUse  bool  // Config.TrackUse

	// now is a coarse clock, nanoseconds since start on the monotonic
	// clock (a step of the wall clock moves nothing), advanced every
	// clockTick by the cache's own goroutine: reading the clock on every
	// lookup would cost more than the rest of the lookup.
	start     time.Time
	now       atomic.Int64
	stopClock chan struct{}
	clockDone chan struct{}
}

// clockTick is the resolution of expiry. An entry expires up to one tick
// before its TTL has passed, never after: lookups read a clock that lags
// the real one by up to a tick, so entries are stamped a tick early.
const clockTick = 5 * time.Millisecond

// New returns a Cache with the given budget.
func New[V any](cfg Config) (*Cache[V], error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("local: MaxBytes must be positive")
	}
	counters := cfg.Counters
	if counters == 0 {
		counters = max(cfg.MaxBytes/64, 1024)
	}
	if counters < 0 {
		return nil, errors.New("local: Counters must not be negative")
	}
	rcfg := &ristretto.Config[uint64, *entry[V]]{
		NumCounters:        counters,
		MaxCost:            entryBudget(cfg.MaxBytes, counters) - cfg.MaxBytes/recentShare,
		BufferItems:        64,
		IgnoreInternalCost: true,
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
	}
	seed := cfg.Seed
	if seed == (maphash.Seed{}) {
		seed = maphash.MakeSeed()
	}
	c := &Cache[V]{seed: seed, recentMax: cfg.MaxBytes / recentShare / numStripes, start: time.Now(), stopClock: make(chan struct{}), clockDone: make(chan struct{})}
	c.trackUse = cfg.TrackUse
	// ristretto's Close clears the cache through OnEvict; those are not
	// evictions, so the callbacks stop counting once Close begins.
	if f := cfg.OnEvict; f != nil {
		rcfg.OnEvict = func(*ristretto.Item[*entry[V]]) {
			if !c.closed.Load() {
				f()
			}
		}
	}
	if f := cfg.OnReject; f != nil {
		rcfg.OnReject = func(*ristretto.Item[*entry[V]]) {
			if !c.closed.Load() {
				f()
			}
		}
	}
	rc, err := ristretto.NewCache(rcfg)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	c.rc = rc
	go c.tick()
	return c, nil
}

func (c *Cache[V]) tick() {
	defer close(c.clockDone)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.now.Store(int64(time.Since(c.start)))
		case <-c.stopClock:
			return
		}
	}
}

// HashString returns the lookup hash of key: maphash of the key under the
// cache's Seed.
func (c *Cache[V]) HashString(key string) uint64 { return maphash.String(c.seed, key) }

// Get returns the value stored for key, whose hash is h.
func (c *Cache[V]) Get(h uint64, key []byte) (v V, ok bool) {
	st := c.stripe(h)
	g := c.enter()
	if g == nil {
		return v, false
	}
	e, ok := c.rc.Get(h)
	g.leave()
	r := st.recent.Load()
	switch {
	case ok && e.key == string(key):
		if r == e {
			st.recent.CompareAndSwap(r, nil) // applied: ristretto has it now
		}
	case r != nil && r.key == string(key):
		e = r // not applied yet, or evicted: the stripe's latest install
	default:
		return v, false
	}
	if e.epoch != c.epoch.Load() || !st.current(e, h) {
		return v, false
	}
	if e.expires != 0 && c.now.Load() >= e.expires {
		return v, false
	}
	if !e.read.Load() {
		e.read.Store(true)
	}
	return e.val, true
}

// Stamp returns the current stamp of the key whose hash is h. Take it
// before reading the value that will be installed.
func (c *Cache[V]) Stamp(h uint64) Stamp {
	return Stamp{gen: c.stripe(h).gen.Load(), epoch: c.epoch.Load()}
}

// Install stores v under key (hash h) for ttl (zero means no expiry), if
// neither Invalidate for this key's stripe nor Flush ran since s was taken.
// cost is the value's size in bytes; the key and entryOverhead are added.
// It reports whether the value was handed to the cache, which may still
// drop or reject it.
func (c *Cache[V]) Install(h uint64, key string, v V, cost int64, ttl time.Duration, s Stamp) bool {
	if ttl < 0 {
		return false
	}
	st := c.stripe(h)
	g := c.enter()
	if g == nil {
		return false
	}
	defer g.leave()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.gen.Load() != s.gen || c.epoch.Load() != s.epoch {
		return false
	}
	e := &entry[V]{key: key, val: v, epoch: s.epoch}
	e.gen.Store(s.gen)
	e.read.Store(s.inUse)
	cost += int64(len(key)) + entryOverhead
	if ttl > 0 {
		// A tick early: the clock lookups read lags by up to one.
		e.expires = int64(time.Since(c.start) + ttl - clockTick)
	}
	// No TTL for ristretto: it would read the system clock on every Get.
	// An expired entry reads as a miss here, holds its cost until evicted
	// or replaced, and never more than the budget allows.
	if !c.rc.Set(h, e, cost) {
		c.dropped.Add(1)
		return false
	}
	if cost <= c.recentMax {
		st.recent.Store(e)
	} else {
		st.recent.Store(nil)
	}
	return true
}

// Invalidate drops the key whose hash is h and moves its stripe's
// generation, so that installs stamped before this call fail.
func (c *Cache[V]) Invalidate(h uint64) {
	st := c.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	c.invalidate(st, h)
}

// InvalidateRead is Invalidate that also returns the value the cache held
// for key (hash h) if a lookup returned it since it was installed: a key
// in use, which a caller may want to read again at once.
func (c *Cache[V]) InvalidateRead(h uint64, key string) (v V, read bool) {
	st := c.stripe(h)
	st.mu.Lock()
	defer st.mu.Unlock()
	if e := c.held(st, h); e != nil && e.key == key && e.read.Load() {
		v, read = e.val, true
	}
	c.invalidate(st, h)
	return v, read
}

// held returns the entry held for hash h, of stripe st, whose lock is
// held: the stripe's latest install, or what ristretto has; nil if none,
// or if it predates a Flush.
func (c *Cache[V]) held(st *stripe[V], h uint64) *entry[V] {
	if r := st.recent.Load(); r != nil && c.HashString(r.key) == h {
		return c.unflushed(r)
	}
	g := c.enter()
	if g == nil {
		return nil
	}
	e, _ := c.rc.Get(h)
	g.leave()
	return c.unflushed(e)
}

// unflushed returns e unless it is nil or predates a Flush.
func (c *Cache[V]) unflushed(e *entry[V]) *entry[V] {
	if e == nil || e.epoch != c.epoch.Load() {
		return nil
	}
	return e
}

// invalidate drops the key whose hash is h, of stripe st, whose lock is
// held, and moves the stripe's generation.
func (c *Cache[V]) invalidate(st *stripe[V], h uint64) {
	st.invalidated[(st.gen.Load()+1)%ringSize].Store(h)
	st.gen.Add(1)
	st.recent.Store(nil)
	if g := c.enter(); g != nil {
		c.rc.Del(h)
		g.leave()
	}
}

// Replace drops the keys whose hashes are hs, moving their stripes'
// generations, for a writer that stamped each key (before) before writing
// it and now installs what it wrote: after[i] is the stamp to install key
// i with, and ok[i] is false where another write or invalidation of the
// key's stripe came in meanwhile, so the writer's value may not be the
// latest and must not be installed. An entry installed under after[i]
// counts as read if the one dropped had been (see InvalidateRead).
func (c *Cache[V]) Replace(hs []uint64, before []Stamp) (after []Stamp, ok []bool) {
	perStripe := make(map[int]uint64, len(hs))
	inUse := make([]bool, len(hs))
	for i, h := range hs {
		st := c.stripe(h)
		st.mu.Lock()
		if c.trackUse {
			e := c.held(st, h)
			inUse[i] = e != nil && e.read.Load()
		}
		c.invalidate(st, h)
		st.mu.Unlock()
		perStripe[stripeOf(h)]++
	}
	after, ok = make([]Stamp, len(hs)), make([]bool, len(hs))
	for i, h := range hs {
		after[i] = c.Stamp(h)
		after[i].inUse = inUse[i]
		ok[i] = after[i].follows(before[i], perStripe[stripeOf(h)])
	}
	return after, ok
}

// Flush makes every entry read as a miss and fails every install stamped
// before it. It is O(1); the dropped entries' memory is reclaimed as
// ristretto evicts or overwrites them.
func (c *Cache[V]) Flush() { c.epoch.Add(1) }

// Wait blocks until every install handed to ristretto so far has been
// applied or rejected, or the cache is closed. It costs a round trip
// through ristretto's buffer.
func (c *Cache[V]) Wait() {
	g := c.enter()
	if g == nil {
		return
	}
	defer g.leave()
	c.rc.Wait()
}

// Dropped returns how many installs ristretto dropped because its buffer
// was full.
func (c *Cache[V]) Dropped() uint64 { return c.dropped.Load() }

// Cost returns the bytes currently accounted to entries.
func (c *Cache[V]) Cost() int64 { return c.rc.MaxCost() - c.rc.RemainingCost() }

// Close releases the cache's goroutines; lookups afterwards miss and
// installs are refused. It may run concurrently with other calls: it marks
// the cache closed, waits for the operations already inside ristretto (each
// is a few hundred nanoseconds), then closes ristretto.
func (c *Cache[V]) Close() {
	if c.closed.Swap(true) {
		return
	}
	for i := range c.gates {
		for c.gates[i].busy.Load() != 0 {
			runtime.Gosched()
		}
	}
	close(c.stopClock)
	<-c.clockDone
	c.rc.Close()
}

func (c *Cache[V]) stripe(h uint64) *stripe[V] {
	// The low bits pick ristretto's shard; StripeOf uses high bits.
	return &c.stripes[stripeOf(h)]
}
