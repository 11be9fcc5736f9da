package tiered_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tieredcache/tieredcache/tiered"
)

// gather returns the registry's metric families by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series of mf with exactly the given labels.
func value(mf *dto.MetricFamily, labels map[string]string) (float64, bool) {
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestTemplateMetrics checks the series the Python template's dashboards
// query: hit rate from cache_hits_total and cache_misses_total (summed and
// by resource_type) and the P95 of
// cache_operation_duration_seconds_bucket{operation="get"}.
func TestTemplateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, tiered.Options{Registerer: reg})
	ctx := context.Background()
	if _, err := e.users.Get(ctx, "absent"); err == nil {
		t.Fatal("absent key found")
	}
	if err := e.users.Set(ctx, "1", User{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, e.client, e.users, ctx, "1")
	if err := e.users.Delete(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Fetch(ctx, "2", func(context.Context, string) (User, error) { return User{ID: "2"}, nil }); err != nil {
		t.Fatal(err)
	}
	fams := gather(t, reg)
	for name, typ := range map[string]dto.MetricType{
		"cache_hits_total":                 dto.MetricType_COUNTER,
		"cache_misses_total":               dto.MetricType_COUNTER,
		"cache_operation_duration_seconds": dto.MetricType_HISTOGRAM,
		"cache_redis_up":                   dto.MetricType_GAUGE,
	} {
		if fams[name] == nil || fams[name].GetType() != typ {
			t.Fatalf("%s missing or not a %v", name, typ)
		}
	}
	if v, ok := value(fams["cache_hits_total"], map[string]string{"resource_type": "user", "tier": "l1"}); !ok || v < 1 {
		t.Fatalf("cache_hits_total{resource_type=user,tier=l1} = %v, %v", v, ok)
	}
	if v, ok := value(fams["cache_misses_total"], map[string]string{"resource_type": "user", "tier": "l2"}); !ok || v != 2 {
		t.Fatalf("cache_misses_total{resource_type=user,tier=l2} = %v, %v; want 2", v, ok)
	}
	if v, ok := value(fams["cache_misses_total"], map[string]string{"resource_type": "user", "tier": "l1"}); !ok || v != 0 {
		t.Fatalf("cache_misses_total{resource_type=user,tier=l1} = %v, %v; want a 0 series", v, ok)
	}
	for _, op := range []string{"get", "set", "delete", "load"} {
		if n, ok := value(fams["cache_operation_duration_seconds"], map[string]string{"operation": op}); !ok || n == 0 {
			t.Fatalf("no %s observations", op)
		}
	}
	if v, _ := value(fams["cache_redis_up"], map[string]string{}); v != 1 {
		t.Fatalf("cache_redis_up = %v", v)
	}
	if v, _ := value(fams["cache_leases_total"], map[string]string{"resource_type": "user", "outcome": "won"}); v != 1 {
		t.Fatalf("cache_leases_total{outcome=won} = %v", v)
	}
}

// TestTwoClientsOneRegistry registers two Clients on one registry: their
// counts add up, and closing one does not make a counter go down.
func TestTwoClientsOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := newEnv(t, tiered.Options{Registerer: reg})
	b := newEnv(t, tiered.Options{Registerer: reg, Keys: a.kb})
	ctx := context.Background()
	for _, e := range []*env{a, b} {
		if _, err := e.users.Get(ctx, "absent"); err == nil {
			t.Fatal("absent key found")
		}
	}
	miss := func() float64 {
		v, _ := value(gather(t, reg)["cache_misses_total"], map[string]string{"resource_type": "user", "tier": "l2"})
		return v
	}
	if got := miss(); got != 2 {
		t.Fatalf("misses across two clients = %v, want 2", got)
	}
	if err := b.client.Close(); err != nil {
		t.Fatal(err)
	}
	if got := miss(); got != 2 {
		t.Fatalf("misses after closing one client = %v, want 2", got)
	}
	// A foreign collector owning the names is an error, not a silent merge.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cache_hits_total", Help: "x"}, []string{"resource_type", "tier"}))
	if c, err := tiered.New(tiered.Options{Registerer: reg2}); err == nil {
		c.Close()
		t.Fatal("New succeeded against a registry that already has cache_hits_total")
	}
}

// TestL1OnlyMetrics scrapes a Client without Redis: no invalidation mode,
// no panic.
func TestL1OnlyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := tiered.New(tiered.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mfs := gather(t, reg)
	if _, ok := mfs["cache_invalidation_mode"]; ok {
		t.Fatal("an invalidation mode without Redis")
	}
}
