package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kinds of fault.
const (
	faultRestart    = "restart"      // SIGKILL the cache redis-server, start it again on its port
	faultKillPubSub = "kill-pubsub"  // CLIENT KILL TYPE pubsub
	faultPause      = "pause-writes" // CLIENT PAUSE 300 WRITE
	faultSlow       = "slow-loaders" // loaders sleep up to SlowMax instead of LoaderMax
)

const (
	restartDown = 500 * time.Millisecond // how long the killed server stays down
	pauseFor    = 300 * time.Millisecond
	slowFor     = 2 * time.Second
)

const skippedNote = "skipped"

// plannedFault is a fault at an offset from the start.
type plannedFault struct {
	Kind string
	At   time.Duration
	For  time.Duration
}

// Fault is a fault as injected.
type Fault struct {
	Kind       string
	Start, End int64
	Note       string
	Err        string
}

// planFaults spreads faults over the middle of a run of length d, each
// kind in turn (in an order drawn from rng), so the last one's effects are
// over well before the writers stop.
func planFaults(d time.Duration, rng *rand.Rand) []plannedFault {
	span := d * 65 / 100
	n := max(4, int(span/(1600*time.Millisecond)))
	gap := span / time.Duration(n)
	order := []string{faultKillPubSub, faultPause, faultRestart, faultSlow}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var out []plannedFault
	for i := range n {
		jitter := time.Duration(rng.Int64N(int64(gap)/3+1)) - gap/6
		f := plannedFault{Kind: order[i%len(order)], At: d/10 + time.Duration(i)*gap + jitter}
		switch f.Kind {
		case faultRestart:
			f.For = restartDown
		case faultPause:
			f.For = pauseFor
		case faultSlow:
			f.For = slowFor
		}
		out = append(out, f)
	}
	return out
}

// slowWindows are the planned slow-loader windows, for the workers.
func slowWindows(plan []plannedFault) []window {
	var out []window
	for _, f := range plan {
		if f.Kind == faultSlow {
			out = append(out, window{int64(f.At), int64(f.At + f.For)})
		}
	}
	return out
}

// injector injects planned faults into the cache Redis.
type injector struct {
	server *redisServer // nil when the Redis is not ours: no restarts
	admin  *redis.Client
}

// run injects plan, relative to start, until ctx ends, and returns what it
// did. It returns an error only if the server could not be started again.
func (in *injector) run(ctx context.Context, start time.Time, plan []plannedFault) ([]Fault, error) {
	var out []Fault
	for _, p := range plan {
		select {
		case <-time.After(time.Until(start.Add(p.At))):
		case <-ctx.Done():
			return out, nil
		}
		f, err := in.inject(ctx, p)
		out = append(out, f)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (in *injector) inject(ctx context.Context, p plannedFault) (Fault, error) {
	f := Fault{Kind: p.Kind, Start: now()}
	defer func() {
		if f.End == 0 {
			f.End = now()
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	switch p.Kind {
	case faultRestart:
		if in.server == nil {
			f.Note = skippedNote + ": the cache Redis was given with -redis, so it is not ours to restart"
			f.End = now()
			return f, nil
		}
		if err := in.server.kill(); err != nil {
			f.Err = err.Error()
			f.End = now()
			return f, err
		}
		time.Sleep(p.For)
		// Started again whatever became of ctx: the run needs its Redis.
		err := in.server.start(context.Background())
		f.End = now()
		if err != nil {
			f.Err = err.Error()
		}
		return f, err
	case faultKillPubSub:
		n, err := in.admin.Do(cctx, "CLIENT", "KILL", "TYPE", "pubsub").Int64()
		f.End = now()
		if err != nil {
			f.Err = err.Error()
		} else {
			f.Note = fmt.Sprintf("%d connections killed", n)
		}
	case faultPause:
		err := in.admin.Do(cctx, "CLIENT", "PAUSE", p.For.Milliseconds(), "WRITE").Err()
		if err != nil {
			f.Err = err.Error()
		}
		f.End = f.Start + int64(p.For)
	case faultSlow:
		f.End = f.Start + int64(p.For)
		f.Note = "loaders sleep up to the slow limit"
	}
	return f, nil
}

func (f Fault) skipped() bool { return strings.HasPrefix(f.Note, skippedNote) }
