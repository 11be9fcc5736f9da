package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/bench/internal/delayline"
	"github.com/tieredcache/tieredcache/internal/redistest"
	"github.com/tieredcache/tieredcache/tiered"
)

// Round trips. Loopback hides them: a Redis command costs about 30 µs
// there against about 0.5 ms between two hosts of one zone. With
// BENCH_DELAY set to a one-way delay (BENCH_DELAY=250us: a 0.5 ms round
// trip), every client of every scenario reaches Redis through a delay
// line: the one at BENCH_DELAY_ADDR (bench/run.sh starts it in its own
// process, so that its CPU is not counted as the client's), or else one
// this test binary starts.
const (
	envDelay     = "BENCH_DELAY"
	envDelayAddr = "BENCH_DELAY_ADDR"
)

// benchDelay returns the one-way delay of the run, 0 on loopback.
func benchDelay(b *testing.B) time.Duration {
	s := os.Getenv(envDelay)
	if s == "" || s == "0" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a duration such as 250us", envDelay, s)
	}
	return d
}

var (
	lineOnce sync.Once
	line     *delayline.Line
	lineErr  error
)

// clientOptions returns the options of every scenario's clients: the
// shared Redis's options (1 s timeouts, context deadlines honoured, no
// retries) with a pool of 64, reached through the delay line when the run
// has one.
func clientOptions(b *testing.B) *redis.Options {
	b.Helper()
	srv := redistest.Shared(b)
	if !srv.Real() {
		b.Log("WARNING: running against miniredis; Redis figures are meaningless")
	}
	o := srv.Options()
	o.PoolSize = 64
	if benchDelay(b) == 0 {
		return o
	}
	if addr := os.Getenv(envDelayAddr); addr != "" {
		o.Addr = addr
		return o
	}
	lineOnce.Do(func() {
		line, lineErr = delayline.Start(srv.Addr, benchDelay(b))
		if lineErr == nil {
			fmt.Fprintf(os.Stderr, "bench: %s=%v through an in-process delay line: client CPU figures include the line's\n", envDelay, benchDelay(b))
		}
	})
	if lineErr != nil {
		b.Fatal(lineErr)
	}
	o.Addr = line.Addr()
	return o
}

// adminClient returns a client of the shared Redis that bypasses the delay
// line, for measurements (INFO) outside the timed loops.
func adminClient(b *testing.B) *redis.Client {
	b.Helper()
	c := redis.NewClient(redistest.Shared(b).Options())
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// cpuSpan measures the CPU time of this process and of the Redis server
// over a span of operations.
type cpuSpan struct {
	admin *redis.Client
	proc  time.Duration
	redis time.Duration
	ok    bool // Redis reported its CPU at the start
}

// startCPU starts a span; admin reads Redis's INFO.
func startCPU(admin *redis.Client) cpuSpan {
	s := cpuSpan{admin: admin, proc: processCPU()}
	if admin != nil {
		s.redis, s.ok = redisCPU(admin)
	}
	return s
}

// report ends the span and reports the CPU per operation of ops
// operations: this process (client-us/op), Redis (redis-us/op) and their
// sum (cpu-us/op). Redis's figure counts whatever else its clients did
// meanwhile; bench/run.sh gives the suite a server of its own.
func (s cpuSpan) report(b *testing.B, ops int) {
	proc := processCPU() - s.proc
	if ops <= 0 {
		return
	}
	n := float64(ops)
	b.ReportMetric(us(proc)/n, "client-us/op")
	if !s.ok {
		return
	}
	r, ok := redisCPU(s.admin)
	if !ok {
		return
	}
	b.ReportMetric(us(r-s.redis)/n, "redis-us/op")
	b.ReportMetric(us(proc+r-s.redis)/n, "cpu-us/op")
}

// processCPU returns the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the server's user and system CPU time (INFO cpu).
func redisCPU(admin *redis.Client) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := admin.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, false
	}
	var sum float64
	found := 0
	for _, field := range []string{"used_cpu_sys", "used_cpu_user"} {
		if v, ok := infoField(info, field); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				sum += f
				found++
			}
		}
	}
	return time.Duration(sum * float64(time.Second)), found == 2
}

// redisCalls returns how many commands the server has run (INFO
// commandstats, all commands summed).
func redisCalls(admin *redis.Client) (int64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, false
	}
	var total int64
	for line := range strings.Lines(info) {
		// cmdstat_get:calls=12,usec=34,...
		_, rest, ok := strings.Cut(line, ":calls=")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		total += n
	}
	return total, true
}

// infoField returns a field of an INFO reply.
func infoField(info, field string) (string, bool) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, true
		}
	}
	return "", false
}

// roundTrips is a go-redis hook that counts the network round trips a
// client makes: one per command, one per pipeline or transaction.
type roundTrips struct{ n atomic.Int64 }

func (*roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// timeouts counts the operations of a scenario that timed out. Under load
// a Redis operation can exceed its 1 s timeout; the scenario records it
// (the "timeouts" metric) and goes on, rather than ending the run. Ours
// may also answer tiered.ErrUnavailable after timeouts opened its circuit
// breaker: those are counted apart ("unavailable").
type timeouts struct {
	n      atomic.Int64
	first  atomic.Value // error
	down   atomic.Int64 // calls ours refused as Redis unavailable
	firstD atomic.Value // error
	errs   atomic.Int64 // other errors; the first few are logged
}

// failed returns whether the caller must stop: err is neither nil nor a
// timeout, and b has been marked failed. A timeout is counted. It is safe
// for concurrent use (b.Error, not b.Fatal, so that RunParallel's
// goroutines may call it).
func (t *timeouts) failed(b *testing.B, err error) bool {
	switch {
	case err == nil:
		return false
	case isTimeout(err):
		if t.n.Add(1) == 1 {
			t.first.Store(err)
		}
		return false
	case errors.Is(err, tiered.ErrUnavailable):
		if t.down.Add(1) == 1 {
			t.firstD.Store(err)
		}
		return false
	}
	if t.errs.Add(1) <= 3 {
		b.Error(err)
	} else {
		b.Fail()
	}
	return true
}

// report reports the counts, if any, as "timeouts" and "unavailable"
// (totals, not per operation).
func (t *timeouts) report(b *testing.B) {
	if n := t.n.Load(); n > 0 {
		b.ReportMetric(float64(n), "timeouts")
		b.Logf("%d operations timed out, the first: %v", n, t.first.Load())
	}
	if n := t.down.Load(); n > 0 {
		b.ReportMetric(float64(n), "unavailable")
		b.Logf("%d operations found Redis unavailable, the first: %v", n, t.firstD.Load())
	}
}

// any reports whether an operation timed out or found Redis unavailable.
func (t *timeouts) any() bool { return t.n.Load()+t.down.Load() > 0 }

// isTimeout reports whether err is an operation that ran out of time: a
// socket deadline, a context deadline, or no free connection in the pool.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// Some layers flatten the error into text.
	return strings.Contains(err.Error(), "i/o timeout")
}
