package main

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// dataset maps a benchmark's name (without "Benchmark" and the GOMAXPROCS
// suffix) to its values by unit, one per run.
type dataset map[string]map[string][]float64

// parse reads go test -bench output, returning the results and the file
// configuration lines (key: value) it held.
func parse(path string) (dataset, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	d := dataset{}
	cfg := map[string]string{}
	r := benchfmt.NewReader(f, path)
	for r.Scan() {
		switch rec := r.Result().(type) {
		case *benchfmt.SyntaxError:
			// A failing benchmark's message can land in the middle of a
			// result line; that run is lost, the others count.
			fmt.Fprintf(os.Stderr, "report: skipped: %v\n", rec)
		case *benchfmt.Result:
			base, parts := rec.Name.Parts()
			name := strings.TrimPrefix(string(base), "Benchmark")
			for _, p := range parts {
				if !strings.HasPrefix(string(p), "-") {
					name += string(p)
				}
			}
			if d[name] == nil {
				d[name] = map[string][]float64{}
			}
			for _, v := range rec.Values {
				// benchfmt tidies some units (ns/op to sec/op); keep the
				// originals.
				unit, val := v.OrigUnit, v.OrigValue
				if unit == "" {
					unit, val = v.Unit, v.Value
				}
				d[name][unit] = append(d[name][unit], val)
			}
		}
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	// No result at all is possible when every group failed: the report
	// then says so rather than failing.
	// Configuration lines ("key: value"), wherever they are: benchfmt only
	// attaches those before a result to it.
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range configLine.FindAllStringSubmatch(string(text), -1) {
		cfg[m[1]] = strings.TrimSpace(m[2])
	}
	return d, cfg, nil
}

var configLine = regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):[ \t]+(.*)$`)

// stat is the median of a benchmark's runs with its 95% confidence
// interval, computed as benchstat does.
type stat struct {
	ok             bool
	center, lo, hi float64
	n              int
}

func (d dataset) stat(name, unit string) stat {
	vals := d[name][unit]
	if len(vals) == 0 {
		return stat{}
	}
	s := benchmath.AssumeNothing.Summary(benchmath.NewSample(vals, &benchmath.DefaultThresholds), 0.95)
	return stat{ok: true, center: s.Center, lo: s.Lo, hi: s.Hi, n: len(vals)}
}

// value returns the median, or NaN.
func (d dataset) value(name, unit string) float64 {
	s := d.stat(name, unit)
	if !s.ok {
		return math.NaN()
	}
	return s.center
}

// pct returns the half-width of the confidence interval relative to the
// median, as benchstat prints it ("±3%"), or "" when it is undefined.
func (s stat) pct() string {
	if !s.ok || s.n < 2 || math.IsInf(s.lo, 0) || math.IsInf(s.hi, 0) || s.center == 0 {
		return ""
	}
	v := math.Max(s.hi/s.center-1, 1-s.lo/s.center)
	return fmt.Sprintf(" ±%.0f%%", 100*v)
}

// has reports whether a benchmark's name starts with prefix.
func (d dataset) has(prefix string) bool {
	for name := range d {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// sortedNames returns the benchmarks' names in order.
func sortedNames(d dataset) []string {
	names := make([]string, 0, len(d))
	for name := range d {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
