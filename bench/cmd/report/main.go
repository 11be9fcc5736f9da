// Command report runs the benchmark suite of tieredcache and writes
// BENCHMARKS.md (at the repository's root) and a chart of the results.
//
// Run it from the bench directory:
//
//	go run ./cmd/report            # the full suite: -count 6, about 4 minutes on 2 cores
//	go run ./cmd/report -quick     # every benchmark a few iterations, no report (CI)
//
// It uses the Redis at REDIS_ADDR; without one it starts a private
// redis-server on a free port for the run (so that no other client of a
// shared server disturbs the figures), or else uses 127.0.0.1:6379.
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
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// group is one run of the test binary: benchmarks that share a benchtime.
type group struct {
	name      string
	bench     string // -test.bench
	benchtime string // full mode
	quick     string // quick mode
	env       []string
	quickEnv  []string
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
	{name: "L2 hit", bench: "^BenchmarkL2Hit$", benchtime: "1s", quick: "3x"},
	{name: "Fetch miss", bench: "^BenchmarkFetchMiss$", benchtime: "1s", quick: "3x"},
	{name: "Stampede", bench: "^BenchmarkStampede$", benchtime: "10x", quick: "2x"},
	{name: "Invalidation", bench: "^BenchmarkInvalidation$", benchtime: "1s", quick: "3x"},
	{name: "Zipf", bench: "^BenchmarkZipf$", benchtime: "1s", quick: "3x", quickEnv: []string{"BENCH_ZIPF_WARM=2000"}},
	{name: "Memory", bench: "^BenchmarkMemory$", benchtime: "1x", quick: "1x"},
}

// expected lists every benchmark the suite must produce; quick mode fails
// when one is missing.
var expected = []string{
	"L1Hit/mode=serial/impl=ristretto", "L1Hit/mode=serial/impl=tiered", "L1Hit/mode=serial/impl=paired",
	"L1Hit/mode=parallel/impl=ristretto", "L1Hit/mode=parallel/impl=tiered", "L1Hit/mode=parallel/impl=paired",
	"L1Hit/mode=serial/impl=go-redis-cache", "L1Hit/mode=serial/impl=sturdyc",
	"L2Hit/impl=redis-get-json", "L2Hit/impl=tiered", "L2Hit/impl=go-redis-cache", "L2Hit/impl=paired",
	"FetchMiss/impl=redis-get-set", "FetchMiss/impl=tiered", "FetchMiss/impl=go-redis-cache",
	"Stampede/impl=tiered", "Stampede/impl=go-redis-cache", "Stampede/impl=sturdyc",
	"Invalidation/impl=tiered", "Invalidation/impl=redis-pubsub", "Invalidation/impl=redis-pubsub-direct",
	"Zipf/impl=tiered", "Zipf/impl=go-redis-cache", "Zipf/impl=sturdyc",
	"Memory/scenario=entries/impl=tiered", "Memory/scenario=entries/impl=ristretto",
	"Memory/scenario=budget/impl=tiered", "Memory/scenario=budget/impl=ristretto",
}

func main() {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") != "", "run every benchmark a few iterations and write no report (CI)")
	count := flag.Int("count", 6, "runs of each benchmark (-test.count)")
	only := flag.String("only", "", "run only the groups whose name contains this (e.g. Zipf)")
	out := flag.String("out", "../BENCHMARKS.md", "the report to write")
	chart := flag.String("chart", "chart.png", "the chart to write")
	raw := flag.String("raw", "results/raw.txt", "where the raw benchmark output goes")
	fromRaw := flag.Bool("from-raw", false, "do not run: rebuild the report and chart from -raw")
	flag.Parse()
	if err := run(*quick, *count, *only, *out, *chart, *raw, *fromRaw); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(quick bool, count int, only, out, chart, raw string, fromRaw bool) error {
	if _, err := os.Stat("cmd/report/main.go"); err != nil {
		return errors.New("run me from the bench directory: cd bench && go run ./cmd/report")
	}
	if quick {
		count = 1
		if raw == "results/raw.txt" {
			raw = "results/quick.txt"
		}
	}
	cmdline := "cd bench && go run ./cmd/report " + strings.Join(os.Args[1:], " ")
	if s := os.Getenv("BENCH_COMMAND"); s != "" {
		cmdline = s
	}
	env := machineEnv()

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
		f, err := os.Create(raw)
		if err != nil {
			return err
		}
		defer f.Close()
		// Put the machine in the raw file, as benchstat reads it.
		env.Date = time.Now().UTC().Format("2006-01-02 15:04 MST")
		fmt.Fprintf(f, "cpu-model: %s\ncores: %d\ngo: %s\nredis: %s\nredis-addr: %s\nload-before: %s\ndate: %s\ncount: %d\ncommand: %s\n",
			env.CPU, env.Cores, env.Go, env.RedisVersion, addr, loadAvg(), env.Date, count, cmdline)
		env.LoadBefore = loadAvg()
		start := time.Now()
		runs, err := runSuite(f, addr, quick, count, only)
		if err != nil {
			return err
		}
		env.Duration = time.Since(start).Round(time.Second)
		env.LoadAfter = loadAvg()
		env.Runs = runs
		fmt.Fprintf(f, "load-after: %s\nduration: %s\n", env.LoadAfter, env.Duration)
		if err := f.Close(); err != nil {
			return err
		}
	}

	data, cfg, err := parse(raw)
	if err != nil {
		return err
	}
	if quick {
		var missing []string
		for _, name := range expected {
			if only != "" && !strings.Contains(name, strings.ReplaceAll(only, " ", "")) {
				continue
			}
			if _, ok := data[name]; !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("benchmarks missing from the output: %s", strings.Join(missing, ", "))
		}
		fmt.Printf("quick: %d benchmarks ran (timings not checked)\n", len(data))
		return nil
	}
	env.Command, env.Count = cmdline, count
	if fromRaw {
		env.fromConfig(cfg)
		for _, g := range groups {
			env.Runs = append(env.Runs, g.command(g.benchtime, g.env, env.Count))
		}
	}
	stat, err := benchstat(raw)
	if err != nil {
		stat = "benchstat failed: " + err.Error()
	}
	md := renderMarkdown(data, env, stat, chart, raw)
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	if err := drawChart(data, chart); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	fmt.Printf("wrote %s and %s\n", out, chart)
	return nil
}

// runSuite builds the test binary once and runs each group with it,
// appending the output to w and echoing it.
func runSuite(w io.Writer, addr string, quick bool, count int, only string) ([]string, error) {
	bin, err := filepath.Abs("results/bench.test")
	if err != nil {
		return nil, err
	}
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go test -c: %w", err)
	}
	var runs []string
	for _, g := range groups {
		if only != "" && !strings.Contains(g.name, only) {
			continue
		}
		bt, extra := g.benchtime, g.env
		if quick {
			bt, extra = g.quick, g.quickEnv
		}
		args := []string{"-test.run", "^$", "-test.bench", g.bench, "-test.benchmem",
			"-test.benchtime", bt, "-test.count", strconv.Itoa(count)}
		equiv := g.command(bt, extra, count)
		runs = append(runs, equiv)
		fmt.Printf("== %s: %s\n", g.name, equiv)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "REDIS_ADDR="+addr)
		cmd.Env = append(cmd.Env, extra...)
		var buf bytes.Buffer
		cmd.Stdout = io.MultiWriter(w, os.Stdout, &buf)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s: %w", g.name, err)
		}
	}
	return runs, nil
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
func benchstat(raw string) (string, error) {
	var sb strings.Builder
	for _, s := range []struct{ filter, row string }{
		{".name:L1Hit", "/mode,/impl"}, {".name:L2Hit", "/impl"}, {".name:FetchMiss", "/impl"},
		{".name:Stampede", "/impl"}, {".name:Invalidation", "/impl"}, {".name:Zipf", "/impl"},
		{".name:Memory", "/scenario,/impl"},
	} {
		cmd := exec.Command("go", "tool", "benchstat", "-filter", s.filter, "-col", ".name", "-row", s.row,
			"-ignore", "redis-addr,load-before,load-after,duration", raw)
		outp, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, outp)
		}
		sb.Write(outp)
		sb.WriteString("\n")
	}
	return sb.String(), nil
}
