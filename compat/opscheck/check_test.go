package opscheck

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// labelSet is the set of label names a series, or the result of an
// expression, may carry.
type labelSet map[string]bool

func setOf(names ...string) labelSet {
	s := labelSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

func (s labelSet) String() string {
	return "{" + strings.Join(slices.Sorted(maps.Keys(s)), ", ") + "}"
}

// targetLabels are attached by Prometheus to every series it scrapes, so a
// query may use them although the library does not expose them.
var targetLabels = []string{"job", "instance"}

// family is a metric family the library exposed: its type and the label
// names of its series.
type family struct {
	typ    dto.MetricType
	labels labelSet
}

// checker resolves the metric names and labels of PromQL expressions
// against the families the library exposed and the series recording rules
// make.
type checker struct {
	families map[string]family
	recorded map[string]labelSet
	used     map[string]bool // families selected, if not nil
}

// labels returns the label names the result of e may carry, and an error
// for every metric name that nothing exposes and every label used where
// its input does not carry it.
func (ck *checker) labels(e parser.Expr) (labelSet, []error) {
	var errs []error
	ls := ck.walk(e, &errs)
	return ls, errs
}

func (ck *checker) walk(e parser.Expr, errs *[]error) labelSet {
	switch e := e.(type) {
	case *parser.VectorSelector:
		return ck.selector(e, errs)
	case *parser.MatrixSelector:
		return ck.walk(e.VectorSelector, errs)
	case *parser.SubqueryExpr:
		return ck.walk(e.Expr, errs)
	case *parser.ParenExpr:
		return ck.walk(e.Expr, errs)
	case *parser.UnaryExpr:
		return ck.walk(e.Expr, errs)
	case *parser.StepInvariantExpr:
		return ck.walk(e.Expr, errs)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{}
	case *parser.Call:
		return ck.call(e, errs)
	case *parser.AggregateExpr:
		return ck.aggregate(e, errs)
	case *parser.BinaryExpr:
		return ck.binary(e, errs)
	}
	*errs = append(*errs, fmt.Errorf("%s: unexpected PromQL node %T", e, e))
	return labelSet{}
}

// series returns the labels of the series named name: a recording rule's,
// or a family's or a histogram family's _bucket (with le), _sum or _count
// with the target labels added.
func (ck *checker) series(name string) (labelSet, error) {
	if ls, ok := ck.recorded[name]; ok {
		return maps.Clone(ls), nil // a rule's series carry only its result's labels
	}
	ls, err := ck.exposed(name)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(ls)
	for _, l := range targetLabels {
		out[l] = true
	}
	return out, nil
}

func (ck *checker) exposed(name string) (labelSet, error) {
	if ls, ok := ck.recorded[name]; ok {
		return ls, nil
	}
	if f, ok := ck.families[name]; ok {
		if f.typ == dto.MetricType_HISTOGRAM {
			return nil, fmt.Errorf("%s is a histogram: select its _bucket, _sum or _count series", name)
		}
		ck.use(name)
		return f.labels, nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f, found := ck.families[base]; ok && found && f.typ == dto.MetricType_HISTOGRAM {
			ck.use(base)
			ls := maps.Clone(f.labels)
			if suffix == "_bucket" {
				ls["le"] = true
			}
			return ls, nil
		}
	}
	return nil, fmt.Errorf("metric %s is neither exposed by the library nor recorded by a rule", name)
}

func (ck *checker) use(name string) {
	if ck.used != nil {
		ck.used[name] = true
	}
}

func (ck *checker) selector(vs *parser.VectorSelector, errs *[]error) labelSet {
	name := vs.Name
	if name == "" {
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
	}
	if name == "" {
		*errs = append(*errs, fmt.Errorf("%s: a selector without a metric name", vs))
		return labelSet{}
	}
	ls, err := ck.series(name)
	if err != nil {
		*errs = append(*errs, err)
		return labelSet{}
	}
	for _, m := range vs.LabelMatchers {
		if m.Name != model.MetricNameLabel && !ls[m.Name] {
			*errs = append(*errs, fmt.Errorf("%s: label %s is not on %s, whose labels are %s", vs, m.Name, name, ls))
		}
	}
	return ls
}

func isVector(e parser.Expr) bool {
	t := e.Type()
	return t == parser.ValueTypeVector || t == parser.ValueTypeMatrix
}

func (ck *checker) call(c *parser.Call, errs *[]error) labelSet {
	out := labelSet{}
	var vectors []labelSet
	for _, a := range c.Args {
		ls := ck.walk(a, errs)
		if isVector(a) {
			vectors = append(vectors, ls)
			maps.Copy(out, ls)
		}
	}
	switch c.Func.Name {
	case "histogram_quantile", "histogram_fraction":
		// Over classic histograms the aggregation inside must keep le.
		if len(vectors) == 1 && !vectors[0]["le"] {
			*errs = append(*errs, fmt.Errorf("%s: %s over series without le %s: aggregate by le", c, c.Func.Name, vectors[0]))
		}
		delete(out, "le")
	case "label_replace", "label_join":
		if s, ok := unwrap(c.Args[1]).(*parser.StringLiteral); ok {
			out[s.Val] = true
		}
	}
	return out
}

func unwrap(e parser.Expr) parser.Expr {
	for {
		switch x := e.(type) {
		case *parser.ParenExpr:
			e = x.Expr
		case *parser.StepInvariantExpr:
			e = x.Expr
		default:
			return e
		}
	}
}

func (ck *checker) aggregate(a *parser.AggregateExpr, errs *[]error) labelSet {
	in := ck.walk(a.Expr, errs)
	if a.Param != nil {
		ck.walk(a.Param, errs)
	}
	clause := "by"
	if a.Without {
		clause = "without"
	}
	for _, l := range a.Grouping {
		if !in[l] {
			*errs = append(*errs, fmt.Errorf("%s: %s (%s): its input carries only %s", a, clause, l, in))
		}
	}
	switch a.Op {
	case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
		return in // the grouping only ranks; series keep their labels
	}
	if a.Without {
		out := maps.Clone(in)
		for _, l := range a.Grouping {
			delete(out, l)
		}
		return out
	}
	out := setOf(a.Grouping...)
	if a.Op == parser.COUNT_VALUES {
		if s, ok := unwrap(a.Param).(*parser.StringLiteral); ok {
			out[s.Val] = true
		}
	}
	return out
}

func (ck *checker) binary(b *parser.BinaryExpr, errs *[]error) labelSet {
	l, r := ck.walk(b.LHS, errs), ck.walk(b.RHS, errs)
	lv, rv := isVector(b.LHS), isVector(b.RHS)
	switch {
	case !lv && !rv:
		return labelSet{}
	case !rv:
		return l
	case !lv:
		return r
	}
	vm := b.VectorMatching
	if vm == nil {
		vm = &parser.VectorMatching{Card: parser.CardOneToOne}
	}
	for _, name := range vm.MatchingLabels {
		switch {
		case vm.On && (!l[name] || !r[name]):
			*errs = append(*errs, fmt.Errorf("%s: on (%s): not on both sides (%s and %s)", b, name, l, r))
		case !vm.On && !l[name] && !r[name]:
			*errs = append(*errs, fmt.Errorf("%s: ignoring (%s): on neither side (%s and %s)", b, name, l, r))
		}
	}
	if !vm.On {
		// Series match on all their labels but the ignored ones: sides
		// that differ in any other label never match.
		ls, rs := maps.Clone(l), maps.Clone(r)
		for _, name := range vm.MatchingLabels {
			delete(ls, name)
			delete(rs, name)
		}
		if !maps.Equal(ls, rs) {
			*errs = append(*errs, fmt.Errorf("%s: the sides carry different labels (%s and %s), so no series match: use on (...) or ignoring (...)", b, l, r))
		}
	}
	one := r // the side group_left and group_right take included labels from
	if vm.Card == parser.CardOneToMany {
		one = l
	}
	for _, name := range vm.Include {
		if !one[name] {
			*errs = append(*errs, fmt.Errorf("%s: group modifier includes %s, which is not on %s", b, name, one))
		}
	}
	switch b.Op {
	case parser.LAND, parser.LUNLESS:
		return l
	case parser.LOR:
		out := maps.Clone(l)
		maps.Copy(out, r)
		return out
	}
	var out labelSet
	switch vm.Card {
	case parser.CardManyToOne:
		out = maps.Clone(l)
	case parser.CardOneToMany:
		out = maps.Clone(r)
	default:
		out = maps.Clone(l)
		if vm.On {
			out = setOf(vm.MatchingLabels...)
		} else {
			for _, name := range vm.MatchingLabels {
				delete(out, name)
			}
		}
	}
	for _, name := range vm.Include {
		out[name] = true
	}
	return out
}

var (
	legendLabel     = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	annotationLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
)

// missingLabels returns the labels text refers to (with re's first group)
// that ls lacks.
func missingLabels(re *regexp.Regexp, text string, ls labelSet) []string {
	var missing []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if !ls[m[1]] {
			missing = append(missing, m[1])
		}
	}
	return missing
}
