package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// palette: ours first, in a colour that stands out; then the peers.
var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
}

type series struct {
	name string
	vals []float64
}

// bars returns a grouped bar chart: one group per label, one bar per series.
func bars(title, ylabel string, labels []string, ss ...series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	w := vg.Points(40 / float64(len(ss)))
	for i, s := range ss {
		vals := make(plotter.Values, len(s.vals))
		for j, v := range s.vals {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				v = 0
			}
			vals[j] = v
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		b.Color = palette[i%len(palette)]
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(ss)-1)/2)
		p.Add(b)
		if len(ss) > 1 {
			p.Legend.Add(s.name, b)
		}
	}
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.NominalX(labels...)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.Y.Tick.Marker = ticks{}
	p.Add(plotter.NewGrid())
	// Head room for the legend.
	top := 0.0
	for _, s := range ss {
		for _, v := range s.vals {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = math.Max(top, v)
			}
		}
	}
	p.Y.Max = math.Max(top*1.3, 1e-9)
	p.X.Min, p.X.Max = -0.5, float64(len(labels))-0.5
	return p, nil
}

// ticks are the default ticks with plain number labels.
type ticks struct{}

func (ticks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 6, 64)
		}
	}
	return ts
}

// hline adds a dashed horizontal line at y, e.g. a target.
func hline(p *plot.Plot, y float64, name string) {
	l, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: y}, {X: p.X.Max, Y: y}})
	if err != nil {
		return
	}
	l.Color = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	p.Legend.Add(name, l)
	p.Y.Max = math.Max(p.Y.Max, y*1.3)
}

func drawChart(d dataset, path string) error {
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	v := d.value
	var plots [2][4]*plot.Plot
	var err error
	add := func(row, col int, p *plot.Plot, e error) {
		if e != nil && err == nil {
			err = e
		}
		plots[row][col] = p
	}

	// go-redis/cache, an order of magnitude slower, would flatten the
	// others: its figure goes in the title.
	l1 := []string{"ristretto", "ristretto-ttl", "tiered", "tiered-wrap", "sturdyc"}
	var ser, par []float64
	for _, impl := range l1 {
		ser = append(ser, v("L1Hit/mode=serial/impl="+impl, "ns/op"))
		par = append(par, v("L1Hit/mode=parallel/impl="+impl, "ns/op"))
	}
	p, e := bars(fmt.Sprintf("L1 hit (go-redis/cache: %.0f ns serial, off-chart)", v("L1Hit/mode=serial/impl=go-redis-cache", "ns/op")),
		"ns/op", []string{"ristretto\n(floor)", "ristretto\n+TTL", "tiered", "tiered\nWrap", "sturdyc"},
		series{"serial", ser}, series{"parallel", par})
	if e == nil {
		hline(p, targetL1Ratio*ser[0], "1.3× floor (serial)")
	}
	add(0, 0, p, e)

	var l2 []float64
	for _, impl := range []string{"redis-get-json", "tiered", "go-redis-cache", "go-redis-cache-json"} {
		l2 = append(l2, v("L2Hit/impl="+impl, "ns/op")/1e3)
	}
	p, e = bars("L2 hit (L1 skipped)", "µs/op", []string{"GET+JSON\n(floor)", "tiered", "go-redis/\ncache", "go-redis/\ncache JSON"}, series{"", l2})
	if e == nil {
		hline(p, targetL2Ratio*l2[0], "1.1× floor")
	}
	add(0, 1, p, e)

	var miss []float64
	for _, impl := range []string{"redis-get-set", "tiered", "go-redis-cache"} {
		miss = append(miss, v("FetchMiss/impl="+impl, "ns/op")/1e3)
	}
	p, e = bars("Fetch on a miss, instant loader", "µs/op", []string{"GET+SET\n(floor)", "tiered", "go-redis/\ncache Once"}, series{"", miss})
	add(0, 2, p, e)

	var sp50, sp99 []float64
	var slabels []string
	for _, impl := range []string{"tiered", "go-redis-cache", "sturdyc"} {
		n := "Stampede/impl=" + impl
		sp50 = append(sp50, v(n, "p50-ms"))
		sp99 = append(sp99, v(n, "p99-ms"))
		name := map[string]string{"go-redis-cache": "go-redis/cache"}[impl]
		if name == "" {
			name = impl
		}
		slabels = append(slabels, fmt.Sprintf("%s\nloads: %.0f", name, v(n, "loads/op")))
	}
	p, e = bars("Stampede 4×250, 50 ms loader", "caller latency, ms", slabels, series{"p50", sp50}, series{"p99", sp99})
	if e == nil {
		hline(p, targetStampedeP99, "target p99")
	}
	add(0, 3, p, e)

	var ip50, ip99 []float64
	for _, impl := range []string{"tiered", "redis-pubsub"} {
		ip50 = append(ip50, v("Invalidation/impl="+impl, "call-p50-us"))
		ip99 = append(ip99, v("Invalidation/impl="+impl, "call-p99-us"))
	}
	p, e = bars("Invalidation, from Delete/PUBLISH call", "µs", []string{"tiered", "PUBLISH→receive\n(floor)"}, series{"p50", ip50}, series{"p99", ip99})
	add(1, 0, p, e)

	var zops []float64
	var zlabels []string
	for _, impl := range []string{"tiered", "tiered-refetch", "go-redis-cache"} {
		n := "Zipf/impl=" + impl
		zops = append(zops, v(n, "ops/s")/1e3)
		zlabels = append(zlabels, fmt.Sprintf("%s\nL1 %.0f%%", map[string]string{"tiered": "tiered", "tiered-refetch": "tiered\nrefetch", "go-redis-cache": "go-redis/cache"}[impl], v(n, "l1-hit-%")))
	}
	p, e = bars(fmt.Sprintf("Zipf 95/5, 4 instances (sturdyc, in-proc: %.0fk)", v("Zipf/impl=sturdyc", "ops/s")/1e3),
		"k ops/s (higher is better)", zlabels, series{"", zops})
	add(1, 1, p, e)

	var heap, acct []float64
	mimpls := []string{"tiered", "ristretto", "sturdyc", "go-redis-cache"}
	for _, impl := range mimpls {
		n := "Memory/scenario=entries/impl=" + impl
		heap = append(heap, v(n, "heap-B/entry"))
		acct = append(acct, v(n, "accounted-B/entry"))
	}
	p, e = bars("Memory per entry", "bytes", []string{"tiered", "ristretto", "sturdyc", "go-redis/\ncache"}, series{"live heap", heap}, series{"accounted", acct})
	add(1, 2, p, e)

	var bheap []float64
	for _, impl := range []string{"tiered", "ristretto"} {
		bheap = append(bheap, v("Memory/scenario=budget/impl="+impl, "heap-MiB"))
	}
	p, e = bars("Live heap, 2× the 64 MiB budget inserted", "MiB", []string{"tiered", "ristretto"}, series{"", bheap})
	if e == nil {
		hline(p, 64, "budget")
		hline(p, 64*targetMemoryBudget, "budget +10%")
	}
	add(1, 3, p, e)
	if err != nil {
		return err
	}

	const wPx, hPx, dpi = 1800, 900, 96
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(wPx)*vg.Inch/dpi, vg.Length(hPx)*vg.Inch/dpi), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 4, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	grid := [][]*plot.Plot{plots[0][:], plots[1][:]}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] != nil {
				grid[r][c].Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
