// Command report runs the benchmark suite of tieredcache and writes
// BENCHMARKS.md (at the repository's root) and a chart of the results.
//
// Run it from the bench directory:
//
//	go run ./cmd/report            # the full suite: -count 6, about 9 minutes on 2 cores
//	go run ./cmd/report -quick     # every benchmark a few iterations, no report (CI)
//	go run ./cmd/report -delay 0   # loopback only
//
// The suite runs twice: on loopback, then (unless -delay 0) with every
// Redis client of the scenarios that reach Redis going through a delay
// line that adds -delay each way (0.25 ms: a 0.5 ms round trip, as between
// two hosts of one zone). The line runs in this process, so that its CPU is
// not counted as the benchmarks'. The report has a set of tables for each.
//
// It uses the Redis at REDIS_ADDR; without one it starts a private
// redis-server on a free port for the run (so that no other client of a
// shared server disturbs the figures), or else uses 127.0.0.1:6379.
//
// A group whose test binary fails (an operation timeout during setup, a
// crash) is recorded in the report as such and the run goes on; timeouts
// during the measured operations are a metric ("timeouts") of the
// benchmark. In quick mode a failure other than a timeout fails the run.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/bench/internal/delayline"
)

// group is one run of the test binary: benchmarks that share a benchtime.
type group struct {
	name      string
	bench     string // -test.bench
	benchtime string // full mode
	quick     string // quick mode
	env       []string
	quickEnv  []string
	redis     bool // its measured operations reach Redis: it runs in the delayed pass too
	count     int  // if not 0, at most this many runs in full mode (long scenarios)
}

// runs returns how many runs of g a pass of count runs makes.
func (g group) runs(count int, quick bool) int {
	if g.count > 0 && !quick {
		return min(count, g.count)
	}
	return count
}

// command is the go test command equivalent to running g.
func (g group) command(benchtime string, env []string, count int) string {
	c := fmt.Sprintf("go test -run '^$' -bench '%s' -benchmem -benchtime %s -count %d .", g.bench, benchtime, count)
	if len(env) > 0 {
		c = strings.Join(env, " ") + " " + c
	}
	return c
}

var groups = []group{
	{name: "L1 hit", bench: "^BenchmarkL1Hit$", benchtime: "500ms", quick: "3x"},
	{name: "L2 hit", bench: "^BenchmarkL2Hit$", benchtime: "1s", quick: "3x", redis: true},
	{name: "Fetch miss", bench: "^BenchmarkFetchMiss$", benchtime: "1s", quick: "3x", redis: true},
	{name: "Stampede", bench: "^BenchmarkStampede$", benchtime: "10x", quick: "2x", redis: true},
	{name: "Invalidation", bench: "^BenchmarkInvalidation$", benchtime: "1s", quick: "3x", redis: true},
	// A count of operations, not a duration: every implementation then
	// runs as many, so their hit ratios, which rise as the tiers warm, are
	// compared at the same point.
	{name: "Zipf", bench: "^BenchmarkZipf$", benchtime: "100000x", quick: "3x", quickEnv: []string{"BENCH_ZIPF_WARM=2000"}, redis: true},
	// Three runs: the one-million-entry budget takes a minute or two each.
	{name: "Memory", bench: "^BenchmarkMemory$", benchtime: "1x", quick: "1x", count: 3},
	// The freshness and payload scenarios run on loopback only: what they
	// measure (loads, waits, bytes, codec time) does not depend on the
	// round trip.
	{name: "Early refresh", bench: "^BenchmarkEarlyRefresh$", benchtime: "1x", quick: "1x", count: 2,
		quickEnv: []string{"BENCH_REFRESH_WINDOWS=2"}},
	{name: "Negative", bench: "^BenchmarkNegative$", benchtime: "3x", quick: "1x", count: 3},
	{name: "TTL jitter", bench: "^BenchmarkTTLJitter$", benchtime: "1x", quick: "1x", count: 2,
		quickEnv: []string{"BENCH_JITTER_KEYS=2000"}},
	{name: "Payload", bench: "^BenchmarkPayload$", benchtime: "200ms", quick: "2x", count: 4},
}

// expected lists every benchmark the suite must produce; quick mode fails
// when one is missing.
var expected = []string{
	"L1Hit/mode=serial/impl=ristretto", "L1Hit/mode=serial/impl=tiered", "L1Hit/mode=serial/impl=paired",
	"L1Hit/mode=parallel/impl=ristretto", "L1Hit/mode=parallel/impl=tiered", "L1Hit/mode=parallel/impl=paired",
	"L1Hit/mode=serial/impl=go-redis-cache", "L1Hit/mode=serial/impl=sturdyc",
	"L2Hit/impl=redis-get-json", "L2Hit/impl=tiered", "L2Hit/impl=go-redis-cache", "L2Hit/impl=paired",
	"FetchMiss/impl=redis-get-set", "FetchMiss/impl=tiered", "FetchMiss/impl=go-redis-cache", "FetchMiss/impl=paired",
	"Stampede/impl=tiered", "Stampede/impl=go-redis-cache", "Stampede/impl=sturdyc",
	"Invalidation/impl=tiered", "Invalidation/impl=redis-pubsub", "Invalidation/impl=redis-pubsub-direct",
	"Zipf/impl=tiered", "Zipf/impl=tiered-refetch", "Zipf/impl=go-redis-cache", "Zipf/impl=sturdyc",
	"Memory/scenario=entries/impl=tiered", "Memory/scenario=entries/impl=ristretto",
	"Memory/scenario=budget/impl=tiered", "Memory/scenario=budget/impl=ristretto",
	"Memory/scenario=budget1M/impl=tiered", "Memory/scenario=budget1M/impl=ristretto",
	"EarlyRefresh/impl=tiered-expiry", "EarlyRefresh/impl=tiered-early", "EarlyRefresh/impl=tiered-early-stale",
	"EarlyRefresh/impl=sturdyc-early",
	"Negative/impl=tiered-negative-ttl", "Negative/impl=tiered-none",
	"TTLJitter/jitter=default", "TTLJitter/jitter=off",
}

// payloadImpls and payloadSizes are the rows and tables of the payload
// scenario; quick mode expects every combination.
var (
	payloadImpls = []string{"redis-json", "plain", "s2", "zstd", "aes-gcm", "s2+aes-gcm"}
	payloadSizes = []string{"10KiB", "1MiB"}
)

func init() {
	for _, size := range payloadSizes {
		for _, op := range []string{"set", "get"} {
			for _, impl := range payloadImpls {
				expected = append(expected, "Payload/size="+size+"/op="+op+"/impl="+impl)
			}
		}
	}
}

// groupOf returns the group that produces the benchmark name.
func groupOf(name string) group {
	for _, g := range groups {
		p := strings.ReplaceAll(g.name, " ", "") + "/"
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			return g
		}
	}
	return group{}
}

func main() {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") != "", "run every benchmark a few iterations and write no report (CI)")
	count := flag.Int("count", 6, "runs of each benchmark (-test.count)")
	only := flag.String("only", "", "run only the groups whose name contains this (e.g. Zipf)")
	delay := flag.Duration("delay", delayline.DefaultDelay, "one-way delay of the second pass through a delay line; 0: loopback only")
	out := flag.String("out", "../BENCHMARKS.md", "the report to write")
	chart := flag.String("chart", "chart.png", "the chart to write")
	raw := flag.String("raw", "results/raw.txt", "where the raw benchmark output goes (the delayed pass: the same name with -rtt)")
	fromRaw := flag.Bool("from-raw", false, "do not run: rebuild the report and chart from -raw")
	flag.Parse()
	if err := run(*quick, *count, *only, *delay, *out, *chart, *raw, *fromRaw); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// rttPath is where the delayed pass's raw output goes, beside raw.
func rttPath(raw string) string {
	ext := filepath.Ext(raw)
	return strings.TrimSuffix(raw, ext) + "-rtt" + ext
}

// failure is a group whose test binary failed.
type failure struct {
	group, pass string
	timeout     bool   // the output speaks of a timeout
	detail      string // the line that says why
}

func (f failure) String() string {
	what := "failed"
	if f.timeout {
		what = "timeout"
	}
	return fmt.Sprintf("%s (%s): %s: %s", f.group, f.pass, what, f.detail)
}

func run(quick bool, count int, only string, delay time.Duration, out, chart, raw string, fromRaw bool) error {
	if _, err := os.Stat("cmd/report/main.go"); err != nil {
		return errors.New("run me from the bench directory: cd bench && go run ./cmd/report")
	}
	if delay < 0 {
		return errors.New("-delay must not be negative")
	}
	if quick {
		count = 1
		if raw == "results/raw.txt" {
			raw = "results/quick.txt"
		}
	}
	rawRTT := rttPath(raw)
	cmdline := "cd bench && go run ./cmd/report " + strings.Join(os.Args[1:], " ")
	if s := os.Getenv("BENCH_COMMAND"); s != "" {
		cmdline = s
	}
	env := machineEnv()
	var failures []failure

	if !fromRaw {
		addr, stop, err := redisAddr()
		if err != nil {
			return err
		}
		defer stop()
		env.RedisVersion, env.RedisAddr = redisVersion(addr), addr
		if err := os.MkdirAll(filepath.Dir(raw), 0o755); err != nil {
			return err
		}
		bin, err := build()
		if err != nil {
			return err
		}
		if quick {
			// The delay line's own tests: bytes intact and in order (its
			// accuracy, measured on Redis, is only logged: left out).
			if err := goTest(addr, "./internal/delayline", "-skip", "^TestAddedRTT$"); err != nil {
				return err
			}
		}
		env.Date = time.Now().UTC().Format("2006-01-02 15:04 MST")
		env.LoadBefore = loadAvg()
		start := time.Now()
		p := pass{bin: bin, addr: addr, quick: quick, count: count, only: only, cmdline: cmdline, env: &env}
		if env.Runs, err = p.run(raw, "loopback", nil, &failures); err != nil {
			return err
		}
		if delay > 0 {
			if err := p.runDelayed(rawRTT, delay, &failures); err != nil {
				return err
			}
		} else {
			_ = os.Remove(rawRTT)
		}
		env.Duration = time.Since(start).Round(time.Second)
		env.LoadAfter = loadAvg()
	}

	data, cfg, err := parse(raw)
	if err != nil {
		return err
	}
	var rtt dataset
	var rttCfg map[string]string
	if _, err := os.Stat(rawRTT); err == nil {
		if rtt, rttCfg, err = parse(rawRTT); err != nil {
			return err
		}
	}
	if quick {
		return checkQuick(data, rtt, only, delay, failures)
	}
	env.Command, env.Count = cmdline, count
	if fromRaw {
		env.fromConfig(cfg)
		for _, g := range groups {
			env.Runs = append(env.Runs, g.command(g.benchtime, g.env, g.runs(env.Count, false)))
		}
	}
	env.Failures = append(splitFailures(cfg["failures"]), splitFailures(rttCfg["failures"])...)
	env.RTT = rttEnv(rttCfg)
	stat, err := benchstat(raw, data)
	if err != nil {
		stat = "benchstat failed: " + err.Error()
	}
	var statRTT string
	if rtt != nil {
		if statRTT, err = benchstat(rawRTT, rtt); err != nil {
			statRTT = "benchstat failed: " + err.Error()
		}
	}
	md := renderMarkdown(data, rtt, env, stat, statRTT, chart, raw, rawRTT)
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	if err := drawChart(data, chart); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	fmt.Printf("wrote %s and %s\n", out, chart)
	for _, f := range env.Failures {
		fmt.Printf("NOTE: %s\n", f)
	}
	return nil
}

// checkQuick fails when a benchmark is missing from a pass's output, or a
// group failed otherwise than by a timeout; timeouts are reported only.
func checkQuick(data, rtt dataset, only string, delay time.Duration, failures []failure) error {
	timedOut := map[string]bool{}
	var problems []string
	for _, f := range failures {
		fmt.Printf("NOTE: %s\n", f)
		if f.timeout {
			timedOut[f.pass+"/"+f.group] = true
		} else {
			problems = append(problems, f.String())
		}
	}
	var missing []string
	for _, name := range expected {
		g := groupOf(name)
		if only != "" && !strings.Contains(g.name, only) {
			continue
		}
		if _, ok := data[name]; !ok && !timedOut["loopback/"+g.name] {
			missing = append(missing, name)
		}
		if delay > 0 && g.redis {
			if _, ok := rtt[name]; !ok && !timedOut["delayed/"+g.name] {
				missing = append(missing, name+" (delayed)")
			}
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "benchmarks missing from the output: "+strings.Join(missing, ", "))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	n := len(data)
	fmt.Printf("quick: %d benchmarks ran on loopback, %d through the delay line (timings not checked)\n", n, len(rtt))
	return nil
}

// build compiles the test binary once for every group and pass.
func build() (string, error) {
	bin, err := filepath.Abs("results/bench.test")
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "test", "-c", "-o", bin, ".")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go test -c: %w", err)
	}
	return bin, nil
}

// goTest runs the tests of a package of this module against addr.
func goTest(addr, pkg string, args ...string) error {
	fmt.Printf("== go test %s %s\n", pkg, strings.Join(args, " "))
	cmd := exec.Command("go", append([]string{"test", "-count=1", pkg}, args...)...)
	cmd.Env = append(os.Environ(), "REDIS_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test %s: %w", pkg, err)
	}
	return nil
}

// pass is one run of the suite's groups into one raw file.
type pass struct {
	bin, addr string
	quick     bool
	count     int
	only      string
	cmdline   string
	env       *env
}

// run runs the groups (only those that reach Redis when extra is not nil)
// into raw, with extra added to their environment, and returns the
// equivalent go test commands. A group that fails is added to failures.
func (p pass) run(raw, name string, extra []string, failures *[]failure, header ...string) ([]string, error) {
	f, err := os.Create(raw)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Put the machine in the raw file, as benchstat reads it.
	e := p.env
	fmt.Fprintf(f, "cpu-model: %s\ncores: %d\ngo: %s\nredis: %s\nredis-addr: %s\nload-before: %s\ndate: %s\ncount: %d\ncommand: %s\n",
		e.CPU, e.Cores, e.Go, e.RedisVersion, p.addr, loadAvg(), e.Date, p.count, p.cmdline)
	for _, h := range header {
		fmt.Fprintln(f, h)
	}
	start := time.Now()
	var runs []string
	var failed []string
	for _, g := range groups {
		if p.only != "" && !strings.Contains(g.name, p.only) || extra != nil && !g.redis {
			continue
		}
		bt, genv := g.benchtime, g.env
		if p.quick {
			bt, genv = g.quick, g.quickEnv
		}
		genv = append(slices.Clone(genv), extra...)
		count := g.runs(p.count, p.quick)
		args := []string{"-test.run", "^$", "-test.bench", g.bench, "-test.benchmem",
			"-test.benchtime", bt, "-test.count", strconv.Itoa(count)}
		equiv := g.command(bt, genv, count)
		runs = append(runs, equiv)
		fmt.Printf("== %s (%s): %s\n", g.name, name, equiv)
		cmd := exec.Command(p.bin, args...)
		cmd.Env = append(os.Environ(), "REDIS_ADDR="+p.addr)
		cmd.Env = append(cmd.Env, genv...)
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(f, os.Stdout, &buf)
		cmd.Stderr = io.MultiWriter(os.Stderr, &buf)
		if err := cmd.Run(); err != nil {
			fl := classify(g.name, name, err, buf.String())
			fmt.Printf("== %s (%s): %s; going on\n", g.name, name, fl)
			*failures = append(*failures, fl)
			failed = append(failed, fl.String())
		}
	}
	// After the results, so that benchstat does not split them by it.
	fmt.Fprintf(f, "load-after: %s\nduration: %s\n", loadAvg(), time.Since(start).Round(time.Second))
	if len(failed) > 0 {
		fmt.Fprintf(f, "failures: %s\n", strings.Join(failed, " | "))
	}
	return runs, f.Close()
}

// runDelayed runs the groups that reach Redis through a delay line of the
// given one-way delay, started in this process.
func (p pass) runDelayed(raw string, delay time.Duration, failures *[]failure) error {
	line, err := delayline.Start(p.addr, delay)
	if err != nil {
		return err
	}
	defer line.Close()
	p50, p99, err := pingAdded(p.addr, line.Addr())
	if err != nil {
		return err
	}
	fmt.Printf("== delay line %s -> %s: %v each way; PING adds p50 %v, p99 %v\n", line.Addr(), p.addr, delay, p50, p99)
	cpu0 := processCPU()
	t0 := time.Now()
	_, err = p.run(raw, "delayed", []string{"BENCH_DELAY=" + strings.ReplaceAll(delay.String(), "µ", "u"), "BENCH_DELAY_ADDR=" + line.Addr()}, failures,
		"delay: "+delay.String(), fmt.Sprintf("line-added-rtt: p50 %v, p99 %v", p50.Round(time.Microsecond), p99.Round(time.Microsecond)))
	if err != nil {
		return err
	}
	// The line's CPU, for the record.
	f, err := os.OpenFile(raw, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "line-cpu: %.1f%% of one core\n", 100*float64(processCPU()-cpu0)/float64(time.Since(t0)))
	return f.Close()
}

// pingAdded times PINGs directly and through the line, alternating, and
// returns the 50th and 99th percentiles of what the line adds.
func pingAdded(direct, viaLine string) (p50, p99 time.Duration, err error) {
	const n = 400
	ctx := context.Background()
	cd := redis.NewClient(&redis.Options{Addr: direct, MaxRetries: -1})
	defer cd.Close()
	cl := redis.NewClient(&redis.Options{Addr: viaLine, MaxRetries: -1})
	defer cl.Close()
	var d, l []time.Duration
	for i := range n + 1 {
		for _, c := range []*redis.Client{cd, cl} {
			t := time.Now()
			if err := c.Ping(ctx).Err(); err != nil {
				return 0, 0, fmt.Errorf("PING through the delay line: %w", err)
			}
			if i == 0 {
				continue // the dial
			}
			if c == cd {
				d = append(d, time.Since(t))
			} else {
				l = append(l, time.Since(t))
			}
		}
	}
	slices.Sort(d)
	slices.Sort(l)
	q := func(s []time.Duration, x float64) time.Duration { return s[min(len(s)-1, int(x*float64(len(s))))] }
	return q(l, 0.5) - q(d, 0.5), q(l, 0.99) - q(d, 0.5), nil
}

// processCPU returns the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var timeoutText = regexp.MustCompile(`(?i)i/o timeout|deadline exceeded|pool timeout|timed out`)

// classify describes the failure of a group from its output: the first
// failure message of the testing package, and the first line that speaks
// of a timeout, if any (then it is a timeout).
func classify(group, pass string, err error, output string) failure {
	f := failure{group: group, pass: pass, detail: err.Error()}
	var msg, timeout string
	for line := range strings.Lines(output) {
		// Log lines may share a line with a result's name: keep the end.
		if k := strings.LastIndex(line, "\t"); k >= 0 {
			line = line[k+1:]
		}
		line = strings.TrimSpace(line)
		if msg == "" && strings.Contains(line, "_test.go:") {
			msg = line
		}
		if timeout == "" && timeoutText.MatchString(line) {
			timeout = line
		}
	}
	switch {
	case msg != "" && timeout != "" && msg != timeout:
		f.detail = msg + " (after: " + timeout + ")"
	case msg != "":
		f.detail = msg
	case timeout != "":
		f.detail = timeout
	}
	f.timeout = timeout != ""
	if len(f.detail) > 400 {
		f.detail = f.detail[:400] + "…"
	}
	f.detail = strings.ReplaceAll(f.detail, "|", "/")
	return f
}

// splitFailures reads back a raw file's failures line.
func splitFailures(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " | ")
}

// rttEnv describes the delayed pass from its raw file's configuration.
func rttEnv(cfg map[string]string) string {
	if cfg["delay"] == "" {
		return ""
	}
	return fmt.Sprintf("%s each way; PING round trip added: %s; the line's CPU (in the report's process): %s",
		cfg["delay"], cfg["line-added-rtt"], cfg["line-cpu"])
}

// redisAddr returns the Redis to run against and how to stop it if this
// command started it.
func redisAddr() (string, func(), error) {
	if a := os.Getenv("REDIS_ADDR"); a != "" {
		return a, func() {}, ping(a)
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for i := 0; ; i++ {
			if ping(addr) == nil {
				break
			}
			if i == 100 {
				stop()
				return "", nil, fmt.Errorf("the redis-server started on %s does not answer", addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Printf("== started a private redis-server on %s\n", addr)
		return addr, stop, nil
	}
	const def = "127.0.0.1:6379"
	return def, func() {}, ping(def)
}

func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", addr, err)
	}
	return nil
}

func redisVersion(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	if m := regexp.MustCompile(`redis_version:(\S+)`).FindStringSubmatch(info); m != nil {
		return m[1]
	}
	return "unknown"
}

// env describes the machine and the run.
type env struct {
	CPU, Kernel, Go       string
	Cores                 int
	RedisVersion          string
	RedisAddr             string
	Date, Command         string
	Count                 int
	Runs                  []string
	LoadBefore, LoadAfter string
	Duration              time.Duration
	RTT                   string   // the delayed pass; "" if it did not run
	Failures              []string // groups whose test binary failed
}

func machineEnv() env {
	e := env{Cores: runtime.NumCPU(), CPU: "unknown", Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(b); m != nil {
			e.CPU = strings.TrimSpace(string(m[1]))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		e.Go = strings.TrimSpace(string(b))
	}
	return e
}

func (e *env) fromConfig(cfg map[string]string) {
	if v := cfg["redis"]; v != "" {
		e.RedisVersion = v
	}
	if v := cfg["load-before"]; v != "" {
		e.LoadBefore = v
	}
	if v := cfg["load-after"]; v != "" {
		e.LoadAfter = v
	}
	if v := cfg["redis-addr"]; v != "" {
		e.RedisAddr = v
	}
	if v, err := time.ParseDuration(cfg["duration"]); err == nil {
		e.Duration = v
	}
	if v := cfg["date"]; v != "" {
		e.Date = v
	}
	if v, err := strconv.Atoi(cfg["count"]); err == nil {
		e.Count = v
	}
	if v := cfg["command"]; v != "" {
		e.Command = v
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// benchstat runs benchstat over the raw output: per scenario, one table
// per unit with a row per implementation.
func benchstat(raw string, d dataset) (string, error) {
	var sb strings.Builder
	for _, s := range []struct{ filter, row string }{
		{".name:L1Hit", "/mode,/impl"}, {".name:L2Hit", "/impl"}, {".name:FetchMiss", "/impl"},
		{".name:Stampede", "/impl"}, {".name:Invalidation", "/impl"}, {".name:Zipf", "/impl"},
		{".name:Memory", "/scenario,/impl"},
		{".name:EarlyRefresh", "/impl"}, {".name:Negative", "/impl"}, {".name:TTLJitter", "/jitter"},
		{".name:Payload", "/size,/op,/impl"},
	} {
		if !d.has(strings.TrimPrefix(s.filter, ".name:") + "/") {
			continue
		}
		cmd := exec.Command("go", "tool", "benchstat", "-filter", s.filter, "-col", ".name", "-row", s.row,
			"-ignore", "redis-addr,load-before,load-after,duration,failures,delay,line-added-rtt,line-cpu", raw)
		outp, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, outp)
		}
		sb.Write(outp)
		sb.WriteString("\n")
	}
	return sb.String(), nil
}
