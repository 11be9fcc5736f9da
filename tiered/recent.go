package tiered

import (
	"sync"
	"time"
)

// recentWrites remembers the keys this process wrote or deleted lately, so
// that after a gap in the invalidation stream they can be deleted again.
// A Sentinel failover (or any promotion of a replica) drops the writes the
// old master acknowledged but had not replicated: the new master still
// holds the older values, and nothing would ever invalidate them. After a
// gap that brought a server the Client had not seen (by run id), deleting
// the keys written in the window before it makes the next reads load from
// the source of truth. Deleting is always safe for a cache.
type recentWrites struct {
	mu      sync.Mutex
	keys    []string
	at      []int64 // Unix nanoseconds, parallel to keys
	max     int     // the ring's size, reached as writes come
	next    int     // once full, the position the next write overwrites
	wrapped bool    // a write was overwritten: the ring no longer reaches back to the first
}

// recentWindow is how far back a gap reaches: longer than the time a
// client takes to hear of a master change (Sentinel's notification, or the
// bus's run id check every HealthCheckInterval).
func recentWindow(o Options) time.Duration {
	return max(10*time.Second, 4*o.HealthCheckInterval)
}

func newRecentWrites(n int) *recentWrites { return &recentWrites{max: max(n, 1)} }

// add records writes of keys, now.
func (r *recentWrites) add(keys ...string) {
	now := time.Now().UnixNano()
	r.mu.Lock()
	for _, k := range keys {
		if len(r.keys) < r.max {
			r.keys, r.at = append(r.keys, k), append(r.at, now)
			continue
		}
		r.keys[r.next], r.at[r.next] = k, now
		r.next, r.wrapped = (r.next+1)%r.max, true
	}
	r.mu.Unlock()
}

// since returns the keys written at or after t, and whether the ring still
// reaches back that far (otherwise some were forgotten).
func (r *recentWrites) since(t time.Time) (keys []string, complete bool) {
	cut := t.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]struct{})
	n := len(r.keys)
	for i := 1; i <= n; i++ { // newest first
		j := (r.next - i + n) % n
		if r.at[j] < cut {
			return keys, true
		}
		if _, dup := seen[r.keys[j]]; !dup {
			seen[r.keys[j]] = struct{}{}
			keys = append(keys, r.keys[j])
		}
	}
	return keys, !r.wrapped
}
