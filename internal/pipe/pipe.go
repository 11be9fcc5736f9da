// Package pipe runs the pipelines whose order matters: writes that other
// processes must be able to read before they hear of them.
package pipe

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pipeliner is the part of go-redis the package needs.
type Pipeliner interface {
	Pipeline() redis.Pipeliner
}

// Ordered reports whether a pipeline on rdb runs its commands in order: on
// a single node it does; a Cluster or Ring client sends each node its share
// at once.
func Ordered(rdb any) bool {
	_, single := rdb.(*redis.Client)
	return single
}

// WriteThenPublish pipelines writes, then msgs on channel (none when the
// channel is empty): in one round trip when ordered, in a second one once
// every write is done otherwise, so that no process hears of a write before
// it can read it.
func WriteThenPublish(ctx context.Context, rdb Pipeliner, ordered bool, writes func(redis.Pipeliner), channel string, msgs [][]byte) error {
	publish := func(p redis.Pipeliner) {
		if channel == "" {
			return
		}
		for _, m := range msgs {
			p.Publish(ctx, channel, m)
		}
	}
	p := rdb.Pipeline()
	writes(p)
	if ordered {
		publish(p)
	}
	if _, err := p.Exec(ctx); err != nil {
		return err
	}
	if ordered || channel == "" || len(msgs) == 0 {
		return nil
	}
	p = rdb.Pipeline()
	publish(p)
	_, err := p.Exec(ctx)
	return err
}

// Err is the error of a pipeline whose misses are answers: go-redis returns
// the first command's error, which hides a failure behind an earlier
// redis.Nil.
func Err[C redis.Cmder](err error, cmds ...C) error {
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
			return e
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// StageKey returns a fresh staging key for a write guarded by lease: it
// hashes to the Redis Cluster slot of lease, and so of its value key.
func StageKey(lease string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return lease + ":stage:" + base64.RawURLEncoding.EncodeToString(b[:])
}

// Staged is one value written through a staging key: the value goes to
// Stage with a plain SET (never as a script argument, whose copy would
// block Redis for everyone), then Script decides with Keys and Args whether
// to RENAME it into place. Stage must hash to the slot of the keys.
type Staged struct {
	Stage string
	Value []byte
	TTL   time.Duration // of the staged value; the RENAME carries it over
	Keys  []string
	Args  []any
}

// RunStaged pipelines, for each write, SET Stage Value PX TTL and the
// script over its keys, followed by msgs on channel as WriteThenPublish
// orders them. The script runs by EVALSHA; if Redis does not know it (a
// restart, a failover), everything runs again with EVAL. It returns each
// script's reply.
func RunStaged(ctx context.Context, rdb Pipeliner, ordered bool, script *redis.Script, writes []Staged, channel string, msgs [][]byte) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(writes))
	run := func(eval bool) error {
		return WriteThenPublish(ctx, rdb, ordered, func(p redis.Pipeliner) {
			for i, w := range writes {
				p.Set(ctx, w.Stage, w.Value, w.TTL)
				if eval {
					cmds[i] = script.Eval(ctx, p, w.Keys, w.Args...)
				} else {
					cmds[i] = script.EvalSha(ctx, p, w.Keys, w.Args...)
				}
			}
		}, channel, msgs)
	}
	err := run(false)
	for _, c := range cmds {
		if c != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			err = run(true)
			break
		}
	}
	return cmds, err
}

// TTLLeft turns a PTTL reply into the time a value has left: zero for none
// (a negative reply), and a millisecond for a value about to expire (0:
// under a millisecond left).
func TTLLeft(pttl time.Duration) time.Duration {
	switch {
	case pttl < 0:
		return 0
	case pttl == 0:
		return time.Millisecond
	}
	return pttl
}
