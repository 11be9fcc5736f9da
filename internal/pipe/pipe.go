// Package pipe runs the pipelines whose order matters: writes that other
// processes must be able to read before they hear of them.
package pipe

import (
	"context"
	"errors"

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
