package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/internal/observe"
	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// workerConfig is what the coordinator tells a worker process, as JSON in
// its -worker flag.
type workerConfig struct {
	ID         int
	Procs      int
	Keys       int
	CacheAddr  string
	TruthAddr  string
	Prefix     string
	TTL        time.Duration
	L1TTL      time.Duration
	Early      float64       // EarlyRefresh's beta; 0: off
	Stale      time.Duration // ServeStale's window; 0: off
	Refetch    bool          // Options.RefetchInvalidated
	PubSubOnly bool          // Options.PubSubOnly
	LoaderMax  time.Duration
	SlowMax    time.Duration
	Slow       []window // slow-loader windows, relative to the start
	Readers    int
	WriteEvery time.Duration
	Seed       uint64
	LogPath    string
	Verbose    bool
}

// window is a span of time; relative to the start in a workerConfig.
type window struct{ From, To int64 }

// Worker timeouts: generous, for a loaded 2-core machine.
const (
	opTimeout    = 5 * time.Second  // one cache call
	readyTimeout = 30 * time.Second // the Client's first subscription
	upTimeout    = 30 * time.Second // the subscription back after faults
	pollEvery    = 5 * time.Millisecond
)

// Control lines between the coordinator (on the worker's stdin) and the
// worker (on its stdout).
const (
	msgReady   = "ready"
	msgStart   = "start" // "start <unix ns>"
	msgStop    = "stop"
	msgStopped = "stopped"
	msgWaitUp  = "waitup"
	msgUp      = "up"
	msgNotUp   = "notup"
	msgFinal   = "final"
	msgDone    = "done"
)

type worker struct {
	cfg    workerConfig
	lay    layout
	client *tiered.Client
	cache  *tiered.Cache[Item]
	truth  *redis.Client
	index  map[string]int // Redis key -> key number
	start  int64

	mu       sync.Mutex // guards side and unknown
	side     []Op       // loads, invalidations, up/down
	unknown  int        // invalidated keys that are not the checker's
	keyLocks []sync.Mutex
	slow     []window // slow-loader windows, absolute
}

// quietRedis drops go-redis's own log lines: dial failures while Redis is
// down are the point of the faults.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func runWorker(arg string) int {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "tiered-check worker: bad config:", err)
		return 2
	}
	if err := workerMain(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "tiered-check worker %d: %v\n", cfg.ID, err)
		return 1
	}
	return 0
}

func workerMain(cfg workerConfig) error {
	redis.SetLogger(quietRedis{})
	w := &worker{cfg: cfg, lay: newLayout(cfg.Keys, cfg.Procs), keyLocks: make([]sync.Mutex, cfg.Keys)}
	names, err := cacheKeys(cfg.Prefix, cfg.Keys)
	if err != nil {
		return err
	}
	w.index = make(map[string]int, len(names))
	for k, n := range names {
		w.index[n] = k
	}
	// Installed before the Client exists, so nothing applied is missed.
	observe.SetInvalidated(w.invalidated)
	defer observe.SetInvalidated(nil)

	rdb := redis.NewClient(&redis.Options{Addr: cfg.CacheAddr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	w.truth = redis.NewClient(&redis.Options{Addr: cfg.TruthAddr, ContextTimeoutEnabled: true})
	defer w.truth.Close()
	kb, err := keys.New(cfg.Prefix)
	if err != nil {
		return err
	}
	// Quiet unless -v: a nil Logger may mean slog.Default().
	logger := slog.New(slog.DiscardHandler)
	if cfg.Verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).
			With("worker", cfg.ID)
	}
	w.client, err = tiered.New(tiered.Options{
		Redis:  rdb,
		Keys:   kb,
		TTL:    cfg.TTL,
		L1TTL:  cfg.L1TTL,
		Logger: logger,

		RefetchInvalidated: cfg.Refetch,
		PubSubOnly:         cfg.PubSubOnly,
	})
	if err != nil {
		return err
	}
	defer w.client.Close()
	var copts []tiered.Option
	if cfg.Early > 0 {
		copts = append(copts, tiered.EarlyRefresh(cfg.Early))
	}
	if cfg.Stale > 0 {
		copts = append(copts, tiered.ServeStale(cfg.Stale))
	}
	if w.cache, err = tiered.NewCache[Item](w.client, resource, copts...); err != nil {
		return err
	}

	in := lines(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	say := func(s string) {
		fmt.Fprintln(out, s)
		out.Flush()
	}
	if !waitFor(func() bool { return w.client.Stats().RedisUp }, readyTimeout) {
		return errors.New("the Client did not come up")
	}
	say(msgReady)

	line, ok := <-in
	if !ok || !strings.HasPrefix(line, msgStart+" ") {
		return fmt.Errorf("expected %q, got %q", msgStart, line)
	}
	if w.start, err = strconv.ParseInt(strings.TrimPrefix(line, msgStart+" "), 10, 64); err != nil {
		return err
	}
	for _, s := range cfg.Slow {
		w.slow = append(w.slow, window{w.start + s.From, w.start + s.To})
	}
	if d := time.Until(time.Unix(0, w.start)); d > 0 {
		time.Sleep(d)
	}

	ops, err := w.workload(in)
	if err != nil {
		return err
	}
	say(msgStopped)

	if line, ok = <-in; !ok || line != msgWaitUp {
		return fmt.Errorf("expected %q, got %q", msgWaitUp, line)
	}
	if waitFor(func() bool { return w.client.Stats().RedisUp }, upTimeout) {
		say(msgUp)
	} else {
		say(msgNotUp)
	}
	if line, ok = <-in; !ok || line != msgFinal {
		return fmt.Errorf("expected %q, got %q", msgFinal, line)
	}
	ops = append(ops, w.finalReads()...)
	stats, _ := json.Marshal(w.client.Stats())
	t := now()
	ops = append(ops, Op{P: cfg.ID, K: -1, Kind: opStats, Start: t, End: t, Err: string(stats)})
	w.mu.Lock()
	ops = append(ops, w.side...)
	if w.unknown > 0 {
		fmt.Fprintf(os.Stderr, "tiered-check worker %d: %d invalidated keys were not the checker's\n", cfg.ID, w.unknown)
	}
	w.mu.Unlock()
	if err := writeOps(cfg.LogPath, ops); err != nil {
		return err
	}
	say(msgDone)
	return nil
}

// lines delivers the lines of f; the channel closes at EOF (the
// coordinator is gone).
func lines(f *os.File) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

func waitFor(cond func() bool, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// invalidated is the observe hook: the library calls it after applying an
// invalidation, so the time taken here is after the copies were dropped.
func (w *worker) invalidated(ks []string) {
	t := now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if ks == nil {
		w.side = append(w.side, Op{P: w.cfg.ID, K: -1, Kind: opInval, Start: t, End: t})
		return
	}
	for _, key := range ks {
		k, ok := w.index[key]
		if !ok {
			w.unknown++
			continue
		}
		w.side = append(w.side, Op{P: w.cfg.ID, K: k, Kind: opInval, Start: t, End: t})
	}
}

func (w *worker) logSide(o Op) {
	w.mu.Lock()
	w.side = append(w.side, o)
	w.mu.Unlock()
}

// workload runs readers, writers and the up/down poller until the
// coordinator says stop, and returns what they did.
func (w *worker) workload(in <-chan string) ([]Op, error) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	results := make(chan []Op, 16)
	run := func(seed uint64, f func(context.Context, *rand.Rand) []Op) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- f(ctx, rand.New(rand.NewPCG(w.cfg.Seed, seed)))
		}()
	}
	for i := range w.cfg.Readers {
		run(uint64(100+i), w.reader)
	}
	run(1, w.deleteWriter)
	run(2, w.setWriter)
	run(3, w.setWriter)
	run(4, w.poller)
	go func() { wg.Wait(); close(results) }()

	var err error
	if line, ok := <-in; !ok {
		err = errors.New("the coordinator went away")
	} else if line != msgStop {
		err = fmt.Errorf("expected %q, got %q", msgStop, line)
	}
	stop()
	var ops []Op
	for r := range results {
		ops = append(ops, r...)
	}
	return ops, err
}

// poller logs when Client.RedisUp changes.
func (w *worker) poller(ctx context.Context, _ *rand.Rand) []Op {
	var ops []Op
	up := true
	for ctx.Err() == nil {
		if u := w.client.Stats().RedisUp; u != up {
			up = u
			kind := opUp
			if !u {
				kind = opDown
			}
			t := now()
			ops = append(ops, Op{P: w.cfg.ID, K: -1, Kind: kind, Start: t, End: t})
		}
		_ = sleepCtx(ctx, pollEvery)
	}
	return ops
}

// finalReads reads every key with Get, then with Fetch.
func (w *worker) finalReads() []Op {
	var ops []Op
	for k := range w.cfg.Keys {
		ops = append(ops, w.get(k, opFinalGet))
	}
	for k := range w.cfg.Keys {
		ops = append(ops, w.fetch(k, opFinalFetch))
	}
	return ops
}
