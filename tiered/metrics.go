package tiered

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operations timed by cache_operation_duration_seconds.
const (
	opGet = iota
	opSet
	opDelete
	opLoad
	numOps
)

var opNames = [numOps]string{"get", "set", "delete", "load"}

// templateBuckets are the Python template's histogram buckets: with the
// same ones, a dashboard can sum both services' buckets by le.
var templateBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5}

// metrics is a Client's link to the collector of its registry. A nil
// *metrics (no Registerer) records nothing.
type metrics struct {
	col *collector
	obs [numOps]prometheus.Observer
}

func (m *metrics) observe(op int, start time.Time) {
	if m == nil {
		return
	}
	m.obs[op].Observe(time.Since(start).Seconds())
}

// newMetrics attaches c to the collector of reg, registering one if reg has
// none, so that any number of Clients share one set of series with the
// Python template's names and labels.
func newMetrics(c *Client, reg prometheus.Registerer, buckets []float64) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	col := newCollector(buckets)
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("tiered: register metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*collector)
		if !ok {
			return nil, fmt.Errorf("tiered: register metrics: another collector owns these names: %w", err)
		}
		if !slices.Equal(existing.buckets, buckets) {
			return nil, fmt.Errorf("tiered: register metrics: HistogramBuckets %v differ from those of a Client already on this registry, %v", buckets, existing.buckets)
		}
		col = existing
	}
	m := &metrics{col: col}
	for op := range numOps {
		m.obs[op] = col.duration.WithLabelValues(opNames[op])
	}
	col.attach(c)
	return m, nil
}

func (m *metrics) unregister(c *Client) {
	if m != nil {
		m.col.detach(c)
	}
}

var (
	descHits = prometheus.NewDesc("cache_hits_total",
		"Cache hits by resource type and tier (l1: in-process, l2: Redis).", []string{"resource_type", "tier"}, nil)
	descMisses = prometheus.NewDesc("cache_misses_total",
		"Reads that found the key in neither tier, by resource type, under the last tier asked "+
			"(l2; l1 without Redis) with the other at 0: hits and misses share labels, so the "+
			"template's rate(cache_hits_total) + rate(cache_misses_total) matches them.",
		[]string{"resource_type", "tier"}, nil)
	descLoads = prometheus.NewDesc("cache_loads_total",
		"Loader calls by resource type.", []string{"resource_type"}, nil)
	descLoadErrors = prometheus.NewDesc("cache_load_errors_total",
		"Loader calls that failed or panicked, by resource type.", []string{"resource_type"}, nil)
	descCoalesced = prometheus.NewDesc("cache_coalesced_total",
		"Callers that shared another caller's load in the same process, by resource type.", []string{"resource_type"}, nil)
	descLeases = prometheus.NewDesc("cache_leases_total",
		"Cross-process load leases by outcome: won (this process loaded), waited (another process held it), "+
			"lost (a write came first; not cached), wait_expired (waited too long; loaded uncached).",
		[]string{"resource_type", "outcome"}, nil)
	descDecodeErrors = prometheus.NewDesc("cache_decode_errors_total",
		"Values in Redis that did not decode, by resource type: read as misses and left in place, "+
			"since another service may have written them.", []string{"resource_type"}, nil)
	descFillsRefused = prometheus.NewDesc("cache_fills_refused_total",
		"Loaded values not stored because another writer stored the key first, by resource type.", []string{"resource_type"}, nil)
	descTooLarge = prometheus.NewDesc("cache_oversize_values_total",
		"Values not written because their encoding exceeded the size limit, by resource type.", []string{"resource_type"}, nil)
	descDegraded = prometheus.NewDesc("cache_degraded_loads_total",
		"Loads served without Redis because it failed, by resource type.", []string{"resource_type"}, nil)
	descNegative = prometheus.NewDesc("cache_negative_hits_total",
		"Reads answered not-found by a cached absence, by resource type.", []string{"resource_type"}, nil)
	descStale = prometheus.NewDesc("cache_stale_served_total",
		"Fetch hits on values past their TTL, served while a refresh runs, by resource type.", []string{"resource_type"}, nil)
	descRefreshes = prometheus.NewDesc("cache_refreshes_total",
		"Background refreshes (early or of stale values) this process ran, by resource type and outcome.",
		[]string{"resource_type", "outcome"}, nil)
	descRefetches = prometheus.NewDesc("cache_refetches_total",
		"Keys read again from Redis after a reported change, because they were in use here (RefetchInvalidated), by resource type.",
		[]string{"resource_type"}, nil)
	descRefetchesSkipped = prometheus.NewDesc("cache_refetches_skipped_total",
		"Changed keys in use here that were only dropped, not read again, because enough refetches were under way.", nil, nil)
	descPublished = prometheus.NewDesc("cache_invalidations_published_total",
		"Invalidation messages published.", nil, nil)
	descReceived = prometheus.NewDesc("cache_invalidations_received_total",
		"Invalidation messages received from other processes.", nil, nil)
	descMalformed = prometheus.NewDesc("cache_invalidation_messages_malformed_total",
		"Malformed messages on the invalidation channel, ignored.", nil, nil)
	descFlushes = prometheus.NewDesc("cache_l1_flushes_total",
		"In-process tier flushes by reason (gap: resubscribed after a gap; down: subscription lost; "+
			"flushall: Redis reported a FLUSHALL or FLUSHDB).", []string{"reason"}, nil)
	descMode = prometheus.NewDesc("cache_invalidation_mode",
		"Clients by how they learn of changes (tracking: Redis reports every modified key; "+
			"pubsub: only messages writers publish).", []string{"mode"}, nil)
	descAdmissions = prometheus.NewDesc("cache_l1_admissions_failed_total",
		"In-process installs that did not happen, by result (dropped: write buffer full; rejected: admission policy).", []string{"result"}, nil)
	descEvictions = prometheus.NewDesc("cache_l1_evictions_total",
		"In-process entries evicted to stay within the byte budget.", nil, nil)
	descL1Bytes = prometheus.NewDesc("cache_l1_bytes",
		"Bytes accounted in the in-process tier.", nil, nil)
	descRedisErrors = prometheus.NewDesc("cache_redis_errors_total",
		"Failed Redis calls by operation.", []string{"operation"}, nil)
	descRedisUp = prometheus.NewDesc("cache_redis_up",
		"1 while every Client can use Redis (subscription confirmed, breaker closed), 0 otherwise.", nil, nil)
	descBreakerOpen = prometheus.NewDesc("cache_redis_breaker_open",
		"1 while the circuit breaker in front of Redis is open in any Client.", nil, nil)
	descBreakerRejections = prometheus.NewDesc("cache_redis_breaker_rejections_total",
		"Redis calls refused by an open circuit breaker.", nil, nil)
	descPending = prometheus.NewDesc("cache_invalidations_pending",
		"Keys whose write or delete failed on Redis, waiting to be invalidated when it returns.", nil, nil)
	descReplayed = prometheus.NewDesc("cache_invalidations_replayed_total",
		"Deferred invalidations replayed after Redis returned.", nil, nil)
	descLost = prometheus.NewDesc("cache_invalidations_lost_total",
		"Deferred invalidations dropped because too many were waiting.", nil, nil)
)

// gauges are the descs whose series are gauges, not counters.
var gauges = map[*prometheus.Desc]bool{
	descL1Bytes: true, descRedisUp: true, descBreakerOpen: true, descPending: true, descMode: true,
}

// collector exposes the counters of every Client attached to it, summed,
// plus the shared duration histogram. Counts of closed Clients are kept so
// that totals never go down.
type collector struct {
	duration *prometheus.HistogramVec
	buckets  []float64

	mu      sync.Mutex
	clients map[*Client]struct{}
	retired series
}

// series maps a metric and its label values to a value.
type series map[seriesKey]float64

type seriesKey struct {
	desc   *prometheus.Desc
	l1, l2 string
}

func newCollector(buckets []float64) *collector {
	return &collector{
		buckets: buckets,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cache_operation_duration_seconds",
			Help:    "Latency of Redis operations (get, set, delete) and of loader calls (load).",
			Buckets: buckets,
		}, []string{"operation"}),
		clients: make(map[*Client]struct{}),
		retired: make(series),
	}
}

func (col *collector) attach(c *Client) {
	col.mu.Lock()
	col.clients[c] = struct{}{}
	col.mu.Unlock()
}

func (col *collector) detach(c *Client) {
	col.mu.Lock()
	defer col.mu.Unlock()
	if _, ok := col.clients[c]; !ok {
		return
	}
	delete(col.clients, c)
	s := make(series)
	c.addSeries(s)
	for k, v := range s {
		if gauges[k.desc] {
			continue
		}
		col.retired[k] += v
	}
}

// Describe implements prometheus.Collector.
func (col *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descHits, descMisses, descLoads, descLoadErrors, descCoalesced, descLeases,
		descDecodeErrors, descFillsRefused, descTooLarge, descDegraded, descNegative, descStale, descRefreshes, descRefetches, descRefetchesSkipped, descPublished, descReceived, descMalformed,
		descFlushes, descAdmissions, descEvictions, descL1Bytes, descRedisErrors, descRedisUp,
		descBreakerOpen, descBreakerRejections, descPending, descReplayed, descLost, descMode,
	} {
		ch <- d
	}
	col.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (col *collector) Collect(ch chan<- prometheus.Metric) {
	col.mu.Lock()
	s := make(series, len(col.retired))
	for k, v := range col.retired {
		s[k] = v
	}
	up, open := 1.0, 0.0
	for c := range col.clients {
		c.addSeries(s)
		if c.bus != nil && !c.redisUp() {
			up = 0
		}
		if c.breakerIsOpen() {
			open = 1
		}
		if c.bus != nil && c.bus.Mode() != "" {
			s[seriesKey{desc: descMode, l1: c.bus.Mode()}]++
		}
	}
	col.mu.Unlock()
	s[seriesKey{desc: descRedisUp}] = up
	s[seriesKey{desc: descBreakerOpen}] = open
	for k, v := range s {
		var labels []string
		if k.l1 != "" {
			labels = append(labels, k.l1)
		}
		if k.l2 != "" {
			labels = append(labels, k.l2)
		}
		vt := prometheus.CounterValue
		if gauges[k.desc] {
			vt = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(k.desc, vt, v, labels...)
	}
	col.duration.Collect(ch)
}

// addSeries adds the Client's counts to s.
func (c *Client) addSeries(s series) {
	add := func(d *prometheus.Desc, v uint64, labels ...string) {
		k := seriesKey{desc: d}
		if len(labels) > 0 {
			k.l1 = labels[0]
		}
		if len(labels) > 1 {
			k.l2 = labels[1]
		}
		s[k] += float64(v)
	}
	st := c.Stats()
	missTier, otherTier := "l2", "l1"
	if c.store == nil {
		missTier, otherTier = otherTier, missTier
	}
	for _, cs := range st.Caches {
		r := cs.Resource
		add(descHits, cs.HitsL1, r, "l1")
		add(descHits, cs.HitsL2, r, "l2")
		// Every (resource, tier) pair exists in both metrics, or PromQL's
		// one-to-one matching would drop the unmatched hits.
		add(descMisses, cs.Misses, r, missTier)
		add(descMisses, 0, r, otherTier)
		add(descLoads, cs.Loads, r)
		add(descLoadErrors, cs.LoadErrors, r)
		add(descCoalesced, cs.Coalesced, r)
		add(descLeases, cs.LeasesWon, r, "won")
		add(descLeases, cs.LeasesWaited, r, "waited")
		add(descLeases, cs.LeaseLost, r, "lost")
		add(descLeases, cs.WaitExpired, r, "wait_expired")
		add(descDecodeErrors, cs.DecodeErrors, r)
		add(descFillsRefused, cs.FillsRefused, r)
		add(descTooLarge, cs.TooLarge, r)
		add(descDegraded, cs.DegradedLoads, r)
		add(descNegative, cs.NegativeHits, r)
		add(descStale, cs.StaleServed, r)
		add(descRefreshes, cs.Refreshes-min(cs.Refreshes, cs.RefreshErrors), r, "ok")
		add(descRefreshes, cs.RefreshErrors, r, "error")
		add(descRefetches, cs.Refetches, r)
	}
	add(descRefetchesSkipped, st.RefetchesSkipped)
	add(descPublished, st.InvalidationsPublished)
	add(descReceived, st.InvalidationsReceived)
	add(descMalformed, st.MalformedMessages)
	add(descFlushes, st.FlushesGap, "gap")
	add(descFlushes, st.FlushesDown, "down")
	add(descFlushes, st.FlushesAll, "flushall")
	add(descAdmissions, st.L1Dropped, "dropped")
	add(descAdmissions, st.L1Rejected, "rejected")
	add(descEvictions, st.L1Evicted)
	s[seriesKey{desc: descL1Bytes}] += float64(st.L1Bytes)
	s[seriesKey{desc: descPending}] += float64(st.PendingInvalidations)
	add(descBreakerRejections, st.BreakerRejections)
	add(descReplayed, st.ReplayedInvalidations)
	add(descLost, st.LostInvalidations)
	for i, op := range redisOps {
		add(descRedisErrors, c.counters.redisErrors[i].load(), op)
	}
}
