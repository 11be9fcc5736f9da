package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/tieredcache/tieredcache/tiered"
)

// What a worker does between start and stop: readers, writers, and the
// loaders they run.

func opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// reader reads random keys: Fetch, Get, FetchMany and Fetch with Reload.
func (w *worker) reader(ctx context.Context, rng *rand.Rand) []Op {
	var ops []Op
	for ctx.Err() == nil {
		k := rng.IntN(w.cfg.Keys)
		x := rng.IntN(100)
		switch {
		case x < 45:
			ops = append(ops, w.fetch(k, opFetch))
		case x < 75:
			ops = append(ops, w.get(k, opGet))
		case x < 95:
			ops = append(ops, w.many(rng)...)
		default:
			ops = append(ops, w.fetch(k, opRefresh))
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
	}
	return ops
}

func (w *worker) fetch(k int, kind string) Op {
	ctx, cancel := opContext()
	defer cancel()
	var opts []tiered.Option
	if kind == opRefresh {
		opts = append(opts, tiered.Reload())
	}
	o := Op{P: w.cfg.ID, K: k, Kind: kind, Start: now()}
	it, err := w.cache.Fetch(ctx, keyID(k), func(ctx context.Context, _ string) (Item, error) { return w.load(ctx, k) }, opts...)
	o.End = now()
	o.Err = errClass(err)
	if err == nil {
		o.V = it.Version
	}
	return o
}

func (w *worker) get(k int, kind string) Op {
	ctx, cancel := opContext()
	defer cancel()
	o := Op{P: w.cfg.ID, K: k, Kind: kind, Start: now()}
	it, err := w.cache.Get(ctx, keyID(k))
	o.End = now()
	switch {
	case err == nil:
		o.V = it.Version
	case errors.Is(err, tiered.ErrNotFound):
		// V 0: not found
	default:
		o.Err = errClass(err)
	}
	return o
}

func (w *worker) many(rng *rand.Rand) []Op {
	n := 2 + rng.IntN(5)
	perm := rng.Perm(w.cfg.Keys)[:min(n, w.cfg.Keys)]
	ids := make([]string, len(perm))
	for i, k := range perm {
		ids[i] = keyID(k)
	}
	ctx, cancel := opContext()
	defer cancel()
	start := now()
	got, err := w.cache.FetchMany(ctx, ids, w.loadMany)
	end := now()
	ops := make([]Op, len(perm))
	for i, k := range perm {
		ops[i] = Op{P: w.cfg.ID, K: k, Kind: opMany, Start: start, End: end, Err: errClass(err)}
		if it, ok := got[ids[i]]; ok && err == nil {
			ops[i].V = it.Version
		} else if err == nil {
			ops[i].Err = "missing from FetchMany"
		}
	}
	return ops
}

// loaderDelay is the loader's sleep after it read the truth: the window in
// which the truth may move on.
func (w *worker) loaderDelay() time.Duration {
	limit := w.cfg.LoaderMax
	t := now()
	for _, s := range w.slow {
		if t >= s.From && t < s.To {
			limit = w.cfg.SlowMax
		}
	}
	if limit <= 0 {
		return 0
	}
	return rand.N(limit)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// load is Fetch's loader: it reads the key's version in the source of
// truth, then sleeps.
func (w *worker) load(ctx context.Context, k int) (Item, error) {
	s := now()
	v, err := w.truth.Get(ctx, truthKey(k)).Int64()
	e := now()
	if err != nil {
		return Item{}, err
	}
	w.logSide(Op{P: w.cfg.ID, K: k, Kind: opLoad, Start: s, End: e, V: v})
	if err := sleepCtx(ctx, w.loaderDelay()); err != nil {
		return Item{}, err
	}
	return Item{ID: keyID(k), Version: v}, nil
}

// loadMany is FetchMany's loader: one read of the truth for all ids.
func (w *worker) loadMany(ctx context.Context, ids []string) (map[string]Item, error) {
	ks := make([]int, len(ids))
	tk := make([]string, len(ids))
	for i, id := range ids {
		k, err := strconv.Atoi(strings.TrimPrefix(id, "k"))
		if err != nil {
			return nil, err
		}
		ks[i], tk[i] = k, truthKey(k)
	}
	s := now()
	vals, err := w.truth.MGet(ctx, tk...).Result()
	e := now()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Item, len(ids))
	for i, val := range vals {
		str, _ := val.(string)
		v, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("truth of %s: %q", ids[i], str)
		}
		w.logSide(Op{P: w.cfg.ID, K: ks[i], Kind: opLoad, Start: s, End: e, V: v})
		out[ids[i]] = Item{ID: ids[i], Version: v}
	}
	if err := sleepCtx(ctx, w.loaderDelay()); err != nil {
		return nil, err
	}
	return out, nil
}

// pause waits a random time around WriteEvery, or until ctx ends.
func (w *worker) pause(ctx context.Context, rng *rand.Rand) bool {
	return sleepCtx(ctx, time.Duration(rng.Int64N(2*int64(w.cfg.WriteEvery)+1))) == nil
}

// bump increments the key's version in the source of truth.
func (w *worker) bump(k int) (int64, error) {
	ctx, cancel := opContext()
	defer cancel()
	return w.truth.Incr(ctx, truthKey(k)).Result()
}

// deleteWriter writes classDelete keys: bump the truth, then Delete.
func (w *worker) deleteWriter(ctx context.Context, rng *rand.Rand) []Op {
	ks := w.lay.keysOf(classDelete)
	var ops []Op
	for len(ks) > 0 && w.pause(ctx, rng) {
		ops = append(ops, w.write(ks[rng.IntN(len(ks))], opDelete))
	}
	return ops
}

// setWriter writes the classSet keys this worker owns, one write per key
// at a time: bump the truth, then Set (three times in four) or Delete.
func (w *worker) setWriter(ctx context.Context, rng *rand.Rand) []Op {
	var ks []int
	for _, k := range w.lay.keysOf(classSet) {
		if w.lay.owner(k) == w.cfg.ID {
			ks = append(ks, k)
		}
	}
	var ops []Op
	for len(ks) > 0 && w.pause(ctx, rng) {
		k := ks[rng.IntN(len(ks))]
		kind := opSet
		if rng.IntN(4) == 0 {
			kind = opDelete
		}
		w.keyLocks[k].Lock()
		ops = append(ops, w.write(k, kind))
		w.keyLocks[k].Unlock()
	}
	return ops
}

func (w *worker) write(k int, kind string) Op {
	o := Op{P: w.cfg.ID, K: k, Kind: kind, Start: now()}
	v, err := w.bump(k)
	if err != nil {
		o.End, o.Err = now(), "truth: "+err.Error()
		return o
	}
	o.V = v
	ctx, cancel := opContext()
	defer cancel()
	if kind == opSet {
		err = w.cache.Set(ctx, keyID(k), Item{ID: keyID(k), Version: v})
	} else {
		err = w.cache.Delete(ctx, keyID(k))
	}
	o.End = now()
	o.Err = errClass(err)
	return o
}
