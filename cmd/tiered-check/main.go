// Command tiered-check checks the consistency of the tiered cache from the
// outside, in the spirit of Jepsen: several processes, a versioned source
// of truth, a writer that bypasses the library, faults, and a log of every
// operation checked afterwards against the rules the library promises.
//
// The coordinator (this process) starts a cache redis-server on a free
// loopback port (or uses -redis) and a second redis-server that holds the
// source of truth, a version counter per key, which is never faulted. It
// runs -procs worker processes (this binary again, with -worker), each with
// one tiered.Client over -keys keys: readers (Fetch, Get, FetchMany, Fetch
// with Refresh, whose loader reads the truth and then sleeps up to
// -loader-max), writers that bump the truth and then Delete, and writers
// that bump the truth and then Set (one at a time per key). The
// coordinator itself writes some keys as the Python service does, with
// SETEX and DEL and no invalidation. With -faults it restarts the cache
// Redis, kills the pub/sub connections, pauses writes and slows the
// loaders. Every operation, every applied invalidation (observe hook) and
// every change of Client.RedisUp is logged with wall-clock times.
//
// After -duration everything stops; after a settle period every worker
// reads every key, and the coordinator reads the cache Redis and the truth.
// It then prints one table and exits 1 if a must-be-0 line is not 0, 2 if
// the run itself failed. See the README's "Consistency checker" section.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	var o options
	worker := flag.String("worker", "", "internal: run as a worker process with this JSON configuration")
	flag.IntVar(&o.procs, "procs", 4, "worker processes")
	flag.IntVar(&o.keys, "keys", 30, "keys (a tenth written by the foreign SETEX writer, a tenth by the foreign DEL writer, the rest half by Delete writers, half by Set writers)")
	flag.IntVar(&o.readers, "readers", 8, "reader goroutines per worker")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long the workload runs")
	flag.BoolVar(&o.faults, "faults", false, "inject faults: restart the cache Redis, CLIENT KILL TYPE pubsub, CLIENT PAUSE WRITE, slow loaders")
	flag.DurationVar(&o.ttl, "ttl", 200*time.Millisecond, "the Client's TTL (and the foreign writer's SETEX TTL)")
	flag.DurationVar(&o.l1ttl, "l1ttl", 100*time.Millisecond, "the Client's L1TTL")
	flag.Float64Var(&o.early, "early-refresh", 0, "EarlyRefresh's beta for the workers' cache (0: off)")
	flag.DurationVar(&o.stale, "serve-stale", 0, "ServeStale's window for the workers' cache (0: off)")
	flag.BoolVar(&o.refetch, "refetch", false, "RefetchInvalidated for the workers' Clients")
	flag.BoolVar(&o.pubsubOnly, "pubsub-only", false, "PubSubOnly for the workers' Clients: only writers that publish invalidate, so the foreign writer does not run")
	flag.DurationVar(&o.loaderMax, "loader-max", 100*time.Millisecond, "the loader sleeps a random 0..loader-max after reading the truth")
	flag.DurationVar(&o.slowMax, "slow-max", 0, "the loader's limit during a slow-loaders fault (default 10 x loader-max)")
	flag.DurationVar(&o.writeEvery, "write-every", 50*time.Millisecond, "mean pause between two writes of one writer (uniform 0..2x)")
	flag.DurationVar(&o.settle, "settle", 0, "quiet time before the final reads (default 2 x l1ttl + loader-max + 300ms)")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of the workload's and the faults' random choices (default: from the clock)")
	flag.StringVar(&o.redisAddr, "redis", "", "use this Redis as the cache Redis instead of starting one (restart faults are then skipped)")
	flag.BoolVar(&o.verbose, "v", false, "print examples of each violation, the faults, and the library's warnings (on stderr)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (worker logs, redis logs)")
	flag.Parse()
	if *worker != "" {
		os.Exit(runWorker(*worker))
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "tiered-check:", err)
		os.Exit(2)
	}
	redis.SetLogger(quietRedis{})
	os.Exit(coordinate(o))
}

func (o *options) validate() error {
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	case o.procs < 2 || o.procs > 16:
		return errors.New("-procs must be 2..16")
	case o.keys < 8 || o.keys > 1000:
		return errors.New("-keys must be 8..1000")
	case o.readers < 1:
		return errors.New("-readers must be at least 1")
	case o.duration < time.Second || o.duration > time.Hour:
		return errors.New("-duration must be 1s..1h")
	case o.ttl <= 0 || o.l1ttl <= 0 || o.l1ttl > o.ttl:
		return errors.New("need 0 < -l1ttl <= -ttl")
	case o.loaderMax < 0 || o.slowMax < 0 || o.writeEvery <= 0 || o.settle < 0:
		return errors.New("durations must not be negative, -write-every positive")
	}
	if o.slowMax == 0 {
		o.slowMax = 10 * o.loaderMax
	}
	if o.settle == 0 {
		o.settle = 2*o.l1ttl + o.loaderMax + 300*time.Millisecond
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return nil
}

func coordinate(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A closed stdout (| head) must not kill the coordinator before it has
	// stopped what it started.
	signal.Ignore(syscall.SIGPIPE)
	c := &coordinator{o: o}
	res, err := c.run(ctx)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "tiered-check: interrupted; everything it started is stopped")
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tiered-check: run failed:", err)
		return 2
	}
	if report(os.Stdout, analyze(res)) {
		return 1
	}
	return 0
}
