package opscheck

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"

	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

const (
	recordingFile  = "../../ops/prometheus/recording.yml"
	alertsFile     = "../../ops/prometheus/alerts.yml"
	alertTestsFile = "../../ops/prometheus/alerts_test.yml"
	dashboardFile  = "../../ops/grafana/tieredcache.json"
)

type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// scrape is what the library exposed: its families, and the values of its
// series before and after some traffic.
type scrape struct {
	families      map[string]family
	before, after map[string]float64
}

// scrapeLibrary runs a Client on a real Redis with a registry of its own,
// drives reads, writes, deletes, a value too large and a value that does
// not decode, and gathers the registry before and after.
func scrapeLibrary(t *testing.T) scrape {
	t.Helper()
	srv := redistest.Shared(t)
	rdb := srv.Client(t)
	kb, err := keys.New(redistest.Prefix(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := tiered.New(tiered.Options{Redis: srv.Client(t), Keys: kb, Registerer: reg,
		MaxValueBytes: 1024, OpTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, err := tiered.NewCache[User](c, "user")
	if err != nil {
		t.Fatal(err)
	}
	// cache_invalidation_mode appears once the subscription is confirmed.
	before := awaitFamily(t, reg, "cache_invalidation_mode")

	ctx := context.Background()
	load := func(_ context.Context, id string) (User, error) { return User{ID: id}, nil }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = users.Fetch(ctx, "1", load) // miss, load, fill
	must(err)
	_, err = users.Fetch(ctx, "1", load) // hit
	must(err)
	must(users.Set(ctx, "2", User{ID: "2"}))
	_, err = users.Get(ctx, "2")
	must(err)
	must(users.Delete(ctx, "2"))
	if _, err := users.Get(ctx, "2"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	// Random text, so that no compression brings it under MaxValueBytes.
	var big strings.Builder
	for big.Len() < 4096 {
		big.WriteString(rand.Text())
	}
	if err := users.Set(ctx, "big", User{ID: "big", Name: big.String()}); !errors.Is(err, tiered.ErrTooLarge) {
		t.Fatalf("Set of a value over MaxValueBytes: %v, want ErrTooLarge", err)
	}
	// Another service's value that does not decode as a User.
	key, err := kb.Build(ctx, "user", "foreign")
	must(err)
	must(rdb.Set(ctx, key, `{"id": 42`, time.Minute).Err())
	if _, err := users.Get(ctx, "foreign"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get of an undecodable value: %v, want ErrNotFound", err)
	}

	mfs, err := reg.Gather()
	must(err)
	s := scrape{families: map[string]family{}, before: values(before), after: values(mfs)}
	for _, mf := range mfs {
		f := family{typ: mf.GetType(), labels: labelSet{}}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				f.labels[lp.GetName()] = true
			}
		}
		s.families[mf.GetName()] = f
	}
	// The traffic reached the series the alerts watch.
	for series, atLeast := range map[string]float64{
		`cache_loads_total{resource_type="user"}`:                             1,
		`cache_misses_total{resource_type="user",tier="l2"}`:                  2,
		`cache_decode_errors_total{resource_type="user"}`:                     1,
		`cache_oversize_values_total{resource_type="user"}`:                   1,
		`cache_operation_duration_seconds_count{operation="get"}`:             3,
		`cache_operation_duration_seconds_count{operation="set"}`:             1,
		`cache_operation_duration_seconds_count{operation="delete"}`:          1,
		`cache_operation_duration_seconds_bucket{le="+Inf",operation="load"}`: 1,
	} {
		if s.after[series] < atLeast {
			t.Errorf("%s = %v after the traffic, want at least %v", series, s.after[series], atLeast)
		}
	}
	hits := s.after[`cache_hits_total{resource_type="user",tier="l1"}`] + s.after[`cache_hits_total{resource_type="user",tier="l2"}`]
	if hits < 2 {
		t.Errorf("%v hits after the traffic, want at least 2", hits)
	}
	return s
}

// awaitFamily gathers reg until it exposes the family name.
func awaitFamily(t *testing.T, reg *prometheus.Registry, name string) []*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == name }) {
			return mfs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never exposed", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// values flattens families into series text (name{label="value",...},
// labels sorted as the registry sorts them) and values.
func values(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			ls := m.GetLabel()
			switch {
			case m.Counter != nil:
				out[name+labelText(ls, "", "")] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+labelText(ls, "", "")] = m.Gauge.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				for _, b := range h.GetBucket() {
					out[name+"_bucket"+labelText(ls, "le", fmt.Sprint(b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
				out[name+"_bucket"+labelText(ls, "le", "+Inf")] = float64(h.GetSampleCount())
				out[name+"_count"+labelText(ls, "", "")] = float64(h.GetSampleCount())
				out[name+"_sum"+labelText(ls, "", "")] = h.GetSampleSum()
			}
		}
	}
	return out
}

func labelText(ls []*dto.LabelPair, name, value string) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	if name != "" {
		parts = append(parts, fmt.Sprintf("%s=%q", name, value))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// loadScript is a promqltest load of two scrapes a minute apart; a series
// that first appears in the second starts at 0.
func (s scrape) loadScript() string {
	var b strings.Builder
	b.WriteString("load 1m\n")
	for _, series := range slices.Sorted(maps.Keys(s.after)) {
		fmt.Fprintf(&b, "  %s %v %v\n", series, s.before[series], s.after[series])
	}
	return b.String()
}

// query is one PromQL expression of the ops files, with where it is from.
type query struct {
	source string
	expr   string // as the engine takes it (dashboard variables replaced)
	// nonEmpty: on the library's series the query must return something
	// (dashboard panels; rule expressions are conditions, mostly empty).
	nonEmpty bool
}

var promqlParser = parser.NewParser(parser.Options{})

func loadRules(t *testing.T, path string) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(path, false, model.LegacyValidation, promqlParser, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", path, errors.Join(errs...))
	}
	var rules []rulefmt.Rule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", path)
	}
	return rules
}

// check parses expr and reports, as test errors, every metric and label it
// uses that the library does not expose. It returns the labels of the
// result.
func (ck *checker) check(t *testing.T, source, expr string) labelSet {
	t.Helper()
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v", source, err)
		return labelSet{}
	}
	ls, errs := ck.labels(e)
	for _, err := range errs {
		t.Errorf("%s: %v", source, err)
	}
	return ls
}

// TestOpsFilesUseExposedSeries: every metric name and label the rules and
// the dashboard use is one the library exposes (or a recording rule
// makes), the dashboard shows every family the library exposes, and every
// query runs on Prometheus's engine over two scrapes of the library.
func TestOpsFilesUseExposedSeries(t *testing.T) {
	s := scrapeLibrary(t)
	ck := &checker{families: s.families, recorded: map[string]labelSet{}}
	var queries []query

	// Recording rules first, in order: later rules and alerts select them.
	for _, r := range loadRules(t, recordingFile) {
		source := "recording.yml: " + r.Record
		ls := ck.check(t, source, r.Expr)
		for l := range r.Labels {
			ls[l] = true
		}
		ck.recorded[r.Record] = ls
		queries = append(queries, query{source: source, expr: r.Expr})
	}
	for _, r := range loadRules(t, alertsFile) {
		source := "alerts.yml: " + r.Alert
		ls := ck.check(t, source, r.Expr)
		for l := range r.Labels {
			ls[l] = true
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s: no severity label", source)
		}
		for _, a := range []string{"summary", "description"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", source, a)
			}
		}
		for name, text := range r.Annotations {
			if missing := missingLabels(annotationLabel, text, ls); len(missing) > 0 {
				t.Errorf("%s: annotation %s uses $labels %v, but the alert carries only %s", source, name, missing, ls)
			}
		}
		queries = append(queries, query{source: source, expr: r.Expr})
	}
	ck.used = map[string]bool{}
	queries = append(queries, checkDashboard(t, ck)...)
	// The dashboard shows every family, so a new metric comes with a panel.
	for _, name := range slices.Sorted(maps.Keys(s.families)) {
		if !ck.used[name] {
			t.Errorf("%s: no panel shows %s", dashboardFile, name)
		}
	}
	checkAlertTestSeries(t, s.families)

	// Every query runs on the engine: a matching error (many-to-many, a
	// duplicate series) fails here as it would in Prometheus.
	storage := promqltest.LoadedStorage(t, s.loadScript())
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1<<20)
	at := time.Unix(0, 0).Add(2 * time.Minute) // both scrapes inside [5m]
	for _, q := range queries {
		qry, err := engine.NewInstantQuery(context.Background(), storage, nil, q.expr, at)
		if err != nil {
			t.Errorf("%s: %v", q.source, err)
			continue
		}
		res := qry.Exec(context.Background())
		switch {
		case res.Err != nil:
			t.Errorf("%s: %v", q.source, res.Err)
		case q.nonEmpty && resultEmpty(res.Value):
			t.Errorf("%s: no result on the library's series: %s", q.source, q.expr)
		}
		qry.Close()
	}
	t.Logf("%d families exposed; %d queries checked (recording rules, alerts, dashboard panels)", len(s.families), len(queries))
}

func resultEmpty(v parser.Value) bool {
	switch v := v.(type) {
	case promql.Vector:
		return len(v) == 0
	case promql.Matrix:
		return len(v) == 0
	case promql.Scalar:
		return false
	}
	return true
}

// The dashboard's JSON model, as far as the checks need it.
type (
	dashboard struct {
		Description string  `json:"description"`
		Panels      []panel `json:"panels"`
		Templating  struct {
			List []variable `json:"list"`
		} `json:"templating"`
	}
	panel struct {
		ID         int         `json:"id"`
		Title      string      `json:"title"`
		Type       string      `json:"type"`
		Datasource *datasource `json:"datasource"`
		Targets    []struct {
			Expr         string      `json:"expr"`
			LegendFormat string      `json:"legendFormat"`
			Datasource   *datasource `json:"datasource"`
		} `json:"targets"`
		Panels []panel `json:"panels"` // of a collapsed row
	}
	datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	variable struct {
		Name       string          `json:"name"`
		Type       string          `json:"type"`
		Query      json.RawMessage `json:"query"`
		Datasource *datasource     `json:"datasource"`
	}
)

// grafanaVars replaces Grafana's interval variables with durations.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

var (
	dashboardVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
	labelValues  = regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)
)

const dsVar = "${datasource}"

// checkDashboard checks the dashboard's variables, data sources, queries
// and legends, and returns its queries.
func checkDashboard(t *testing.T, ck *checker) []query {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if !strings.Contains(d.Description, "0.001, 0.005, 0.01, 0.05, 0.1, 0.5") {
		t.Errorf("the dashboard's description does not give the histogram buckets it assumes")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil || q != "prometheus" {
				t.Errorf("variable %s: a datasource variable of type prometheus, got query %s", v.Name, v.Query)
			}
		case "query":
			checkVariableQuery(t, ck, v)
		}
	}
	for _, want := range []string{"datasource", "resource"} {
		if !vars[want] {
			t.Errorf("the dashboard has no %s variable", want)
		}
	}
	var queries []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no queries", p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				t.Errorf("panel %q: data source %+v, want uid %s", p.Title, p.Datasource, dsVar)
			}
			for i, tg := range p.Targets {
				source := fmt.Sprintf("dashboard panel %d %q, query %d", p.ID, p.Title, i)
				if tg.Datasource != nil && tg.Datasource.UID != dsVar {
					t.Errorf("%s: data source %+v, want uid %s", source, tg.Datasource, dsVar)
				}
				expr := substitute(t, source, tg.Expr, vars)
				ls := ck.check(t, source, expr)
				if missing := missingLabels(legendLabel, tg.LegendFormat, ls); len(missing) > 0 {
					t.Errorf("%s: legend %q uses %v, but the query returns only %s", source, tg.LegendFormat, missing, ls)
				}
				queries = append(queries, query{source: source, expr: expr, nonEmpty: true})
			}
		}
	}
	walk(d.Panels)
	if len(queries) == 0 {
		t.Error("the dashboard has no queries")
	}
	return queries
}

// substitute replaces Grafana's variables in expr: intervals by durations,
// the dashboard's own variables (regex label matchers) by ".*".
func substitute(t *testing.T, source, expr string, vars map[string]bool) string {
	t.Helper()
	expr = grafanaVars.Replace(expr)
	return dashboardVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := dashboardVar.FindStringSubmatch(v)[1]
		if !vars[name] {
			t.Errorf("%s: variable %s is not the dashboard's", source, v)
		}
		return ".*"
	})
}

func checkVariableQuery(t *testing.T, ck *checker, v variable) {
	t.Helper()
	source := "dashboard variable " + v.Name
	if v.Datasource == nil || v.Datasource.UID != dsVar {
		t.Errorf("%s: data source %+v, want uid %s", source, v.Datasource, dsVar)
	}
	var q string
	if err := json.Unmarshal(v.Query, &q); err != nil {
		var obj struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &obj); err != nil {
			t.Errorf("%s: query %s: %v", source, v.Query, err)
			return
		}
		q = obj.Query
	}
	m := labelValues.FindStringSubmatch(q)
	if m == nil {
		t.Errorf("%s: query %q is not label_values(series, label)", source, q)
		return
	}
	if ls := ck.check(t, source, m[1]); !ls[m[2]] {
		t.Errorf("%s: %s has no label %s (it has %s)", source, m[1], m[2], ls)
	}
}

// pythonJob is the job of the alert tests' series that stand for the
// Python template's service, which exposes no tier label.
const pythonJob = "py-api"

var inputSeries = regexp.MustCompile(`(?m)^\s*- series: '(.+)'\s*$`)

// checkAlertTestSeries: the alert tests' input series carry the library's
// metric names and exactly its labels, plus the target labels.
func checkAlertTestSeries(t *testing.T, fams map[string]family) {
	t.Helper()
	raw, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	ck := &checker{families: fams}
	found := inputSeries.FindAllStringSubmatch(string(raw), -1)
	if len(found) == 0 {
		t.Fatalf("%s: no input series found", alertTestsFile)
	}
	for _, m := range found {
		ls, err := promqlParser.ParseMetric(m[1])
		if err != nil {
			t.Errorf("%s: %s: %v", alertTestsFile, m[1], err)
			continue
		}
		want, err := ck.exposed(ls.Get(model.MetricNameLabel))
		if err != nil {
			t.Errorf("%s: %v", alertTestsFile, err)
			continue
		}
		got := labelSet{}
		ls.Range(func(l labels.Label) {
			if l.Name != model.MetricNameLabel && !slices.Contains(targetLabels, l.Name) {
				got[l.Name] = true
			}
		})
		if ls.Get("job") == pythonJob {
			want = maps.Clone(want)
			delete(want, "tier")
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: %s has labels %s, the library exposes %s", alertTestsFile, m[1], got, want)
		}
	}
}

// TestCheckerRejects: the checks catch a renamed metric or label, a
// histogram quantile that lost le, and a legend naming a label the query
// dropped.
func TestCheckerRejects(t *testing.T) {
	ck := &checker{
		families: map[string]family{
			"cache_hits_total":                 {typ: dto.MetricType_COUNTER, labels: setOf("resource_type", "tier")},
			"cache_misses_total":               {typ: dto.MetricType_COUNTER, labels: setOf("resource_type", "tier")},
			"cache_l1_bytes":                   {typ: dto.MetricType_GAUGE, labels: setOf()},
			"cache_operation_duration_seconds": {typ: dto.MetricType_HISTOGRAM, labels: setOf("operation")},
		},
		recorded: map[string]labelSet{"job_resource_type:cache_hit_ratio:rate5m": setOf("job", "resource_type")},
	}
	for _, expr := range []string{
		`rate(cache_hit_total[5m])`,
		`sum by (resource) (rate(cache_hits_total[5m]))`,
		`cache_misses_total{tiers="l1"}`,
		`sum without (operation) (cache_l1_bytes)`,
		`histogram_quantile(0.95, sum by (operation) (rate(cache_operation_duration_seconds_bucket[5m])))`,
		`cache_operation_duration_seconds`,
		`cache_l1_bytes_bucket`,
		`sum by (resource_type) (rate(cache_hits_total[5m])) / on (tier) sum by (resource_type) (rate(cache_misses_total[5m]))`,
		`sum by (resource_type, tier) (rate(cache_hits_total[5m])) / ignoring (tier) group_left (operation) sum by (resource_type) (rate(cache_misses_total[5m]))`,
		`job_resource_type:cache_hit_ratio:rate5m{tier="l1"}`,
		`sum by (tier) (job_resource_type:cache_hit_ratio:rate5m)`,
		`sum by (instance) (job_resource_type:cache_hit_ratio:rate5m)`,
		`sum by (resource_type, tier) (rate(cache_hits_total[5m])) / sum by (resource_type) (rate(cache_misses_total[5m]))`,
		`rate(cache_hits_total[5m]) and job_resource_type:cache_hit_ratio:rate5m`,
	} {
		e, err := promqlParser.ParseExpr(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if _, errs := ck.labels(e); len(errs) == 0 {
			t.Errorf("%s: passed the check", expr)
		}
	}
	for _, expr := range []string{
		`histogram_quantile(0.95, sum by (le, operation) (rate(cache_operation_duration_seconds_bucket[5m])))`,
		`sum by (resource_type, tier) (rate(cache_hits_total[5m])) / ignoring (tier) group_left () sum by (resource_type) (rate(cache_misses_total[5m]))`,
		`job_resource_type:cache_hit_ratio:rate5m < 0.5 and on (job, resource_type) job_resource_type:cache_hit_ratio:rate5m > 0`,
		`sum by (instance) (cache_l1_bytes)`,
	} {
		e, err := promqlParser.ParseExpr(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if _, errs := ck.labels(e); len(errs) > 0 {
			t.Errorf("%s: %v", expr, errs)
		}
	}
	e, err := promqlParser.ParseExpr(`sum by (resource_type) (rate(cache_hits_total[5m]))`)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := ck.labels(e)
	if missing := missingLabels(legendLabel, "{{resource_type}} {{tier}}", ls); !slices.Equal(missing, []string{"tier"}) {
		t.Errorf("legend check: missing %v, want [tier]", missing)
	}
}
