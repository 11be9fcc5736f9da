package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/tiered"
)

// Coordinator limits: generous, for a loaded 2-core machine.
const (
	workerStartTimeout = 60 * time.Second
	phaseTimeout       = 2 * time.Minute
	workerExitTimeout  = 30 * time.Second
)

// options are the command's flags.
type options struct {
	procs, keys, readers int
	duration             time.Duration
	faults               bool
	ttl, l1ttl           time.Duration
	early                float64
	stale                time.Duration
	refetch              bool
	pubsubOnly           bool
	loaderMax, slowMax   time.Duration
	writeEvery           time.Duration
	settle               time.Duration
	seed                 uint64
	redisAddr            string
	verbose, keep        bool
}

// result is everything a run observed, for the checks.
type result struct {
	o          options
	lay        layout
	cacheAddr  string
	truthAddr  string
	redisVer   string
	external   bool
	start      int64 // workload start
	stop       int64 // workload stop
	final      int64 // final reads begin
	ops        []Op
	faults     []Fault
	truthFinal []int64 // by key
	redisFinal []int64 // by key: 0 absent, -1 not a value
	redisStop  []int64 // the same, as soon as every writer had returned
	truthStop  []int64
	notUp      []int // workers whose Client was not up before the final reads
	stats      map[int]tiered.Stats
	elapsed    time.Duration
	dir        string
}

type coordinator struct {
	o       options
	dir     string
	truth   *redisServer
	cache   *redisServer // nil with -redis
	workers []*workerProc
	prefix  string
	names   []string
	rdbs    []*redis.Client
}

// workerProc is a worker process and its control lines.
type workerProc struct {
	id     int
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    chan string // stdout lines; closed at EOF
	exited chan struct{}
	log    string
}

func (c *coordinator) client(addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	c.rdbs = append(c.rdbs, rdb)
	return rdb
}

// run runs the whole experiment and returns what was observed. Whatever
// happens, it stops every process it started before returning.
func (c *coordinator) run(ctx context.Context) (*result, error) {
	began := time.Now()
	o := c.o
	var err error
	if c.dir, err = os.MkdirTemp("", "tiered-check-"); err != nil {
		return nil, err
	}
	defer c.cleanup()
	res := &result{o: o, lay: newLayout(o.keys, o.procs), stats: map[int]tiered.Stats{}, dir: c.dir}

	if c.truth, err = startRedis(ctx, c.dir, "truth"); err != nil {
		return nil, err
	}
	res.truthAddr = c.truth.Addr()
	if o.redisAddr == "" {
		if c.cache, err = startRedis(ctx, c.dir, "cache"); err != nil {
			return nil, err
		}
		res.cacheAddr = c.cache.Addr()
	} else {
		res.cacheAddr, res.external = o.redisAddr, true
	}
	truth := c.client(res.truthAddr)
	admin := c.client(res.cacheAddr)
	if err := admin.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("cache Redis %s: %w", res.cacheAddr, err)
	}
	res.redisVer = redisVersion(ctx, admin)

	var id [4]byte
	_, _ = rand.Read(id[:])
	c.prefix = "tiered_check_" + hex.EncodeToString(id[:])
	if c.names, err = cacheKeys(c.prefix, o.keys); err != nil {
		return nil, err
	}
	for k := range o.keys {
		if err := truth.Set(ctx, truthKey(k), 1, 0).Err(); err != nil {
			return nil, fmt.Errorf("truth: %w", err)
		}
	}

	rng := mrand.New(mrand.NewPCG(o.seed, 0x7c))
	var plan []plannedFault
	if o.faults {
		plan = planFaults(o.duration, rng)
	}
	if err := c.startWorkers(ctx, res, slowWindows(plan)); err != nil {
		return nil, err
	}
	if err := c.expectAll(ctx, workerStartTimeout, func(_ *workerProc, l string) error { return want(l, msgReady) }); err != nil {
		return nil, err
	}

	// The workload: workers, the foreign writer and the faults.
	start := time.Now().Add(300 * time.Millisecond)
	res.start = start.UnixNano()
	if err := c.sendAll(msgStart + " " + strconv.FormatInt(res.start, 10)); err != nil {
		return nil, err
	}
	wctx, stopLoad := context.WithDeadline(ctx, start.Add(o.duration))
	var wg sync.WaitGroup
	// On an early return, the foreign writer and the injector stop before
	// cleanup stops the servers under them.
	defer wg.Wait()
	defer stopLoad()
	var foreignOps []Op
	var faults []Fault
	fw := &foreignWriter{cache: c.client(res.cacheAddr), truth: c.client(res.truthAddr), lay: res.lay, names: c.names, ttl: o.ttl, every: o.writeEvery}
	if !o.pubsubOnly {
		// A foreign writer publishes nothing: in pub/sub mode nobody would
		// hear it, as documented, so it only runs where Redis reports it.
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = sleepCtx(wctx, time.Until(start))
			foreignOps = fw.run(wctx, mrand.New(mrand.NewPCG(o.seed, 0xf0)))
		}()
	}
	var injErr error
	if len(plan) > 0 {
		inj := &injector{server: c.cache, admin: admin}
		wg.Add(1)
		go func() {
			defer wg.Done()
			faults, injErr = inj.run(wctx, start, plan)
		}()
	}
	<-wctx.Done()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := c.sendAll(msgStop); err != nil {
		return nil, err
	}
	res.stop = now()
	if err := c.expectAll(ctx, phaseTimeout, func(_ *workerProc, l string) error { return want(l, msgStopped) }); err != nil {
		return nil, err
	}
	stopLoad()
	wg.Wait()
	res.ops, res.faults = append(res.ops, foreignOps...), faults
	if injErr != nil {
		return nil, fmt.Errorf("fault injection: %w", injErr)
	}
	// Every write has returned: Redis must hold nothing older than the
	// truth now, before any TTL can hide it.
	if res.truthStop, err = c.truthNow(ctx, truth); err != nil {
		return nil, err
	}
	res.redisStop = c.redisNow(ctx, admin)

	// Quiescence: nothing writes; wait for every Client to be up, then for
	// the settle period, then read everything.
	if c.cache != nil && !c.running() {
		if err := c.cache.start(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.sendAll(msgWaitUp); err != nil {
		return nil, err
	}
	if err := c.expectAll(ctx, phaseTimeout, func(w *workerProc, l string) error {
		if l == msgNotUp {
			res.notUp = append(res.notUp, w.id)
			return nil
		}
		return want(l, msgUp)
	}); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, o.settle); err != nil {
		return nil, err
	}
	res.final = now()
	if res.truthFinal, err = c.truthNow(ctx, truth); err != nil {
		return nil, err
	}
	res.redisFinal = c.redisNow(ctx, admin)
	if err := c.sendAll(msgFinal); err != nil {
		return nil, err
	}
	if err := c.expectAll(ctx, phaseTimeout, func(_ *workerProc, l string) error { return want(l, msgDone) }); err != nil {
		return nil, err
	}
	for _, w := range c.workers {
		select {
		case <-w.exited:
		case <-time.After(workerExitTimeout):
			return nil, fmt.Errorf("worker %d did not exit", w.id)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if w.cmd.ProcessState != nil && !w.cmd.ProcessState.Success() {
			return nil, fmt.Errorf("worker %d: %v", w.id, w.cmd.ProcessState)
		}
		ops, err := readOps(w.log)
		if err != nil {
			return nil, err
		}
		for _, op := range ops {
			if op.Kind == opStats {
				var s tiered.Stats
				_ = json.Unmarshal([]byte(op.Err), &s)
				res.stats[op.P] = s
				continue
			}
			res.ops = append(res.ops, op)
		}
	}
	res.elapsed = time.Since(began)
	if o.keep {
		c.keepCoordinatorLog(res, foreignOps)
	}
	return res, nil
}

// keepCoordinatorLog writes what only the coordinator saw next to the
// workers' logs: the times of the phases, the faults and the foreign writes.
func (c *coordinator) keepCoordinatorLog(res *result, foreignOps []Op) {
	meta, _ := json.Marshal(map[string]any{"start": res.start, "stop": res.stop, "final": res.final,
		"faults": res.faults, "truth": res.truthFinal, "redis": res.redisFinal,
		"truthStop": res.truthStop, "redisStop": res.redisStop, "prefix": c.prefix})
	_ = os.WriteFile(filepath.Join(c.dir, "run.json"), meta, 0o644)
	_ = writeOps(filepath.Join(c.dir, "foreign.jsonl"), foreignOps)
}

// running reports whether our cache server is running.
func (c *coordinator) running() bool {
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	return c.cache.cmd != nil
}

func want(got, w string) error {
	if got != w {
		return fmt.Errorf("expected %q, got %q", w, got)
	}
	return nil
}

func (c *coordinator) startWorkers(ctx context.Context, res *result, slow []window) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o := c.o
	for i := range o.procs {
		cfg := workerConfig{
			ID: i, Procs: o.procs, Keys: o.keys,
			CacheAddr: res.cacheAddr, TruthAddr: res.truthAddr, Prefix: c.prefix,
			TTL: o.ttl, L1TTL: o.l1ttl, Early: o.early, Stale: o.stale, Refetch: o.refetch, PubSubOnly: o.pubsubOnly, LoaderMax: o.loaderMax, SlowMax: o.slowMax, Slow: slow,
			Readers: o.readers, WriteEvery: o.writeEvery, Seed: o.seed + uint64(i)*7919,
			LogPath: filepath.Join(c.dir, fmt.Sprintf("worker-%d.jsonl", i)), Verbose: o.verbose,
		}
		arg, _ := json.Marshal(cfg)
		cmd := exec.Command(self, "-worker", string(arg))
		cmd.SysProcAttr = childAttr()
		cmd.Stderr = &prefixWriter{prefix: fmt.Sprintf("worker %d: ", i), w: os.Stderr}
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		// A pipe of our own rather than StdoutPipe: Wait would close that
		// one as the worker exits, possibly before its last line is read.
		out, outW, err := os.Pipe()
		if err != nil {
			return err
		}
		cmd.Stdout = outW
		err = cmd.Start()
		outW.Close()
		if err != nil {
			out.Close()
			return fmt.Errorf("start worker %d: %w", i, err)
		}
		w := &workerProc{id: i, cmd: cmd, in: in, out: make(chan string, 4), exited: make(chan struct{}), log: cfg.LogPath}
		c.workers = append(c.workers, w)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				w.out <- sc.Text()
			}
			out.Close()
			close(w.out)
		}()
		go func() { _ = cmd.Wait(); close(w.exited) }()
	}
	return ctx.Err()
}

func (c *coordinator) sendAll(line string) error {
	for _, w := range c.workers {
		if _, err := fmt.Fprintln(w.in, line); err != nil {
			return fmt.Errorf("worker %d: %w", w.id, err)
		}
	}
	return nil
}

// expectAll waits for one line from every worker and checks it with ok.
func (c *coordinator) expectAll(ctx context.Context, limit time.Duration, ok func(*workerProc, string) error) error {
	timeout := time.After(limit)
	for _, w := range c.workers {
		select {
		case l, open := <-w.out:
			if !open {
				<-w.exited
				return fmt.Errorf("worker %d ended: %v", w.id, w.cmd.ProcessState)
			}
			if err := ok(w, l); err != nil {
				return fmt.Errorf("worker %d: %w", w.id, err)
			}
		case <-timeout:
			return fmt.Errorf("worker %d: no answer within %v", w.id, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (c *coordinator) truthNow(ctx context.Context, truth *redis.Client) ([]int64, error) {
	out := make([]int64, c.o.keys)
	for k := range out {
		v, err := truth.Get(ctx, truthKey(k)).Int64()
		if err != nil {
			return nil, fmt.Errorf("truth: %w", err)
		}
		out[k] = v
	}
	return out, nil
}

// redisNow reads every key's version in the cache Redis: 0 when absent, -1
// when it cannot be read as an Item.
func (c *coordinator) redisNow(ctx context.Context, admin *redis.Client) []int64 {
	out := make([]int64, c.o.keys)
	for k, name := range c.names {
		data, err := admin.Get(ctx, name).Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		var it Item
		if err != nil || json.Unmarshal(data, &it) != nil {
			out[k] = -1
			continue
		}
		out[k] = it.Version
	}
	return out
}

// cleanup stops every process this run started, removes the checker's keys
// from a Redis that is not ours, and removes the run's directory.
func (c *coordinator) cleanup() {
	for _, w := range c.workers {
		_ = w.in.Close()
	}
	for _, w := range c.workers {
		select {
		case <-w.exited:
		case <-time.After(5 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.exited
		}
	}
	if c.o.redisAddr != "" && c.prefix != "" {
		rdb := redis.NewClient(&redis.Options{Addr: c.o.redisAddr, ContextTimeoutEnabled: true})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		iter := rdb.Scan(ctx, 0, c.prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		cancel()
		_ = rdb.Close()
	}
	for _, rdb := range c.rdbs {
		_ = rdb.Close()
	}
	for _, s := range []*redisServer{c.cache, c.truth} {
		if s != nil {
			if err := s.stop(); err != nil {
				fmt.Fprintln(os.Stderr, "tiered-check:", err)
			}
		}
	}
	if c.dir != "" {
		if c.o.keep {
			fmt.Fprintln(os.Stderr, "tiered-check: logs kept in", c.dir)
			return
		}
		_ = os.RemoveAll(c.dir)
	}
}

// prefixWriter prefixes each line written through it.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	_, err := p.w.Write(out)
	return len(b), err
}
