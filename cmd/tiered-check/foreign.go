package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// foreignWriter writes as the Python service does, bypassing the library:
// bump the truth, then SETEX the value in the JSON the library reads
// (classForeignSetex keys) or DEL the key (classForeignDel keys). It never
// publishes and never touches a lease. Its writes are serial.
type foreignWriter struct {
	cache, truth *redis.Client
	lay          layout
	names        []string // Redis keys by key number
	ttl          time.Duration
	every        time.Duration
}

func (fw *foreignWriter) run(ctx context.Context, rng *rand.Rand) []Op {
	ks := append(fw.lay.keysOf(classForeignSetex), fw.lay.keysOf(classForeignDel)...)
	var ops []Op
	for len(ks) > 0 && sleepCtx(ctx, time.Duration(rng.Int64N(2*int64(fw.every)+1))) == nil {
		ops = append(ops, fw.write(ks[rng.IntN(len(ks))]))
	}
	return ops
}

func (fw *foreignWriter) write(k int) Op {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	o := Op{P: foreign, K: k, Kind: opDel, Start: now()}
	if fw.lay.class(k) == classForeignSetex {
		o.Kind = opSetex
	}
	v, err := fw.truth.Incr(ctx, truthKey(k)).Result()
	if err != nil {
		o.End, o.Err = now(), "truth: "+err.Error()
		return o
	}
	o.V = v
	if o.Kind == opSetex {
		data, _ := json.Marshal(Item{ID: keyID(k), Version: v})
		// PSETEX: SETEX in milliseconds, for TTLs under a second.
		err = fw.cache.Do(ctx, "PSETEX", fw.names[k], fw.ttl.Milliseconds(), data).Err()
	} else {
		err = fw.cache.Del(ctx, fw.names[k]).Err()
	}
	o.End = now()
	if err != nil {
		o.Err = "redis: " + err.Error()
	}
	return o
}
