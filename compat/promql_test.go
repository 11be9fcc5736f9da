package compat

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// The Python template's queries, exactly as its caching guide gives them.
const (
	hitRate = `sum(rate(cache_hits_total[5m])) /
sum(rate(cache_hits_total[5m]) + rate(cache_misses_total[5m]))`
	p95Get            = `histogram_quantile(0.95, cache_operation_duration_seconds_bucket{operation="get"})`
	hitRateByResource = `sum by(resource_type) (rate(cache_hits_total[5m])) /
sum by(resource_type) (rate(cache_hits_total[5m]) + rate(cache_misses_total[5m]))`
)

type User struct {
	ID string `json:"id"`
}

// TestTemplateDashboardQueries scrapes the library before and after some
// traffic, a minute apart on the query's clock, and runs the template's
// queries on the two scrapes.
func TestTemplateDashboardQueries(t *testing.T) {
	srv := redistest.Shared(t)
	kb, err := keys.New(redistest.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := tiered.New(tiered.Options{Redis: srv.Client(t), Keys: kb, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, _ := tiered.NewCache[User](c, "user")
	orgs, _ := tiered.NewCache[User](c, "organization")
	ctx := context.Background()

	before := gather(t, reg)
	// Traffic with known outcomes: per resource, misses, Redis hits (a
	// second client reading what the first wrote) and in-process hits.
	peer, err := tiered.New(tiered.Options{Redis: srv.Client(t), Keys: kb, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerUsers, _ := tiered.NewCache[User](peer, "user")
	for i := range 4 {
		_, _ = users.Get(ctx, fmt.Sprint("absent-", i)) // miss
	}
	_, _ = orgs.Get(ctx, "absent") // miss
	for i := range 3 {
		id := fmt.Sprint(i)
		if err := users.Set(ctx, id, User{ID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := peerUsers.Get(ctx, id); err != nil { // L2 hit
			t.Fatal(err)
		}
	}
	if err := orgs.Set(ctx, "o", User{ID: "o"}); err != nil {
		t.Fatal(err)
	}
	waitL1(t, c, orgs, "organization", "o")
	for range 5 {
		_, _ = orgs.Get(ctx, "o")
	}
	after := gather(t, reg)

	st := append(c.Stats().Caches, peer.Stats().Caches...)
	want := map[string][2]float64{} // resource -> hits, lookups
	for _, cs := range st {
		w := want[cs.Resource]
		w[0] += float64(cs.HitsL1 + cs.HitsL2)
		w[1] += float64(cs.HitsL1 + cs.HitsL2 + cs.Misses)
		want[cs.Resource] = w
	}
	var allHits, allLookups float64
	for _, w := range want {
		allHits += w[0]
		allLookups += w[1]
	}

	storage := promqltest.LoadedStorage(t, loadScript(before, after))
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1<<20)
	// Range selectors are left-open: evaluate where both scrapes are
	// inside the [5m] window.
	at := time.Unix(0, 0).Add(2 * time.Minute)

	got := query(t, engine, storage, hitRate, at)
	if len(got) != 1 || math.Abs(got[0].F-allHits/allLookups) > 1e-9 {
		t.Fatalf("hit rate = %v, want %v (%v hits of %v lookups)", got, allHits/allLookups, allHits, allLookups)
	}
	byRes := query(t, engine, storage, hitRateByResource, at)
	if len(byRes) != len(want) {
		t.Fatalf("hit rate by resource = %v, want one sample per resource of %v", byRes, want)
	}
	for _, s := range byRes {
		r := s.Metric.Get("resource_type")
		if w := want[r]; math.Abs(s.F-w[0]/w[1]) > 1e-9 {
			t.Fatalf("hit rate of %s = %v, want %v", r, s.F, w[0]/w[1])
		}
	}
	p95 := query(t, engine, storage, p95Get, at)
	if len(p95) == 0 || math.IsNaN(p95[0].F) || p95[0].F <= 0 {
		t.Fatalf("P95 get latency = %v", p95)
	}
	t.Logf("hit rate %.3f; by resource %v; P95 get %.6fs", got[0].F, byRes, p95[0].F)
}

func waitL1(t *testing.T, c *tiered.Client, cache *tiered.Cache[User], resource, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var before uint64
		for _, cs := range c.Stats().Caches {
			if cs.Resource == resource {
				before = cs.HitsL1
			}
		}
		_, _ = cache.Get(context.Background(), id)
		for _, cs := range c.Stats().Caches {
			if cs.Resource == resource && cs.HitsL1 > before {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never an L1 hit")
		}
		time.Sleep(time.Millisecond)
	}
}

func query(t *testing.T, engine *promql.Engine, storage storage.Queryable, q string, at time.Time) promql.Vector {
	t.Helper()
	qry, err := engine.NewInstantQuery(context.Background(), storage, nil, q, at)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", q, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := labelText(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[mf.GetName()+labels] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[mf.GetName()+labels] = m.Gauge.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				for _, b := range h.GetBucket() {
					out[mf.GetName()+"_bucket"+withLabel(m.GetLabel(), "le", fmt.Sprint(b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
				out[mf.GetName()+"_bucket"+withLabel(m.GetLabel(), "le", "+Inf")] = float64(h.GetSampleCount())
				out[mf.GetName()+"_count"+labels] = float64(h.GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = h.GetSampleSum()
			}
		}
	}
	return out
}

func labelText(ls []*dto.LabelPair) string { return withLabel(ls, "", "") }

func withLabel(ls []*dto.LabelPair, name, value string) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	if name != "" {
		parts = append(parts, fmt.Sprintf("%s=%q", name, value))
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// loadScript writes the two scrapes as a promqltest load, a minute apart;
// a series that first appears in the second scrape starts at 0.
func loadScript(before, after map[string]float64) string {
	names := make([]string, 0, len(after))
	for s := range after {
		names = append(names, s)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("load 1m\n")
	for _, s := range names {
		fmt.Fprintf(&b, "  %s %v %v\n", s, before[s], after[s])
	}
	return b.String()
}

// TestHistogramsSumWithTheTemplate: with the default buckets, the library's
// latency histogram and the Python service's (prometheus_client with the
// template's buckets) share every le, so a dashboard that sums both by le
// gets a valid quantile.
func TestHistogramsSumWithTheTemplate(t *testing.T) {
	srv := redistest.Shared(t)
	kb, err := keys.New(redistest.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := tiered.New(tiered.Options{Redis: srv.Client(t), Keys: kb,
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"job": "go-api"}, reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, _ := tiered.NewCache[User](c, "user")
	py := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cache_operation_duration_seconds",
		Help:    "Latency of Redis operations (get, set, delete) and of loader calls (load).",
		Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5},
	}, []string{"operation"})
	prometheus.WrapRegistererWith(prometheus.Labels{"job": "py-api"}, reg).MustRegister(py)
	ctx := context.Background()
	before := gather(t, reg)
	for i := range 20 {
		_, _ = users.Get(ctx, fmt.Sprint("absent-", i)) // a Redis get each
		py.WithLabelValues("get").Observe(0.002 * float64(i%5+1))
	}
	after := gather(t, reg)
	storage := promqltest.LoadedStorage(t, loadScript(before, after))
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1<<20)
	at := time.Unix(0, 0).Add(2 * time.Minute)

	les := query(t, engine, storage, `count by (le) (cache_operation_duration_seconds_bucket{operation="get"})`, at)
	if len(les) != 7 {
		t.Fatalf("%d le values across both services, want the template's 7: %v", len(les), les)
	}
	for _, s := range les {
		if s.F != 2 {
			t.Fatalf("le %s is exposed by %v services, want both", s.Metric.Get("le"), s.F)
		}
	}
	q := query(t, engine, storage, `histogram_quantile(0.95, sum by (le) (rate(cache_operation_duration_seconds_bucket{operation="get"}[5m])))`, at)
	if len(q) != 1 || math.IsNaN(q[0].F) || q[0].F <= 0 || q[0].F > 0.5 {
		t.Fatalf("P95 over both services = %v", q)
	}
	t.Logf("P95 get latency over both services: %.4fs", q[0].F)
}
