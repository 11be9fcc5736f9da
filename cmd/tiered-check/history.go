package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// resource is the resource type of every key the checker uses.
const resource = "item"

// Item is the value cached under every key: the version of the key in the
// source of truth when it was loaded or written. Its JSON form,
// {"id":"k7","version":42}, is what the foreign writer writes with SETEX.
type Item struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

// keyClass says who writes a key, which decides what a read of it may
// legitimately return.
type keyClass uint8

const (
	// classDelete keys are written by every worker: bump the truth, then
	// Delete. Deletes need no serialisation: after one returns, any load
	// reads a truth at least as new.
	classDelete keyClass = iota
	// classSet keys are written by their owning worker only, one write at
	// a time: bump the truth, then Set the new value (or Delete). Two
	// unserialised bump-then-Set writers could land out of order, which is
	// the application's race, not the cache's.
	classSet
	// classForeignSetex keys are written by the foreign writer only, which
	// bypasses the library: bump the truth, then SETEX the value.
	classForeignSetex
	// classForeignDel keys are written by the foreign writer only: bump
	// the truth, then DEL the key. A DEL of an absent key cannot fence a
	// load already under way (the classic cache-aside race), so what
	// these keys show is reported apart, as information.
	classForeignDel
)

func (c keyClass) String() string {
	return [...]string{"delete", "set", "foreign-setex", "foreign-del"}[c]
}

// layout assigns keys to classes: k0..k(n-1), foreign keys last.
type layout struct {
	N, Procs          int
	NDelete, NSet     int
	NFSetex, NFDelete int
}

func newLayout(n, procs int) layout {
	nf := max(1, n/10)
	rest := n - 2*nf
	nd := rest / 2
	return layout{N: n, Procs: procs, NDelete: nd, NSet: rest - nd, NFSetex: nf, NFDelete: nf}
}

func (l layout) class(k int) keyClass {
	switch {
	case k < l.NDelete:
		return classDelete
	case k < l.NDelete+l.NSet:
		return classSet
	case k < l.NDelete+l.NSet+l.NFSetex:
		return classForeignSetex
	}
	return classForeignDel
}

// owner is the worker that writes a classSet key.
func (l layout) owner(k int) int { return k % l.Procs }

func (l layout) keysOf(c keyClass) []int {
	var out []int
	for k := range l.N {
		if l.class(k) == c {
			out = append(out, k)
		}
	}
	return out
}

func keyID(k int) string    { return "k" + strconv.Itoa(k) }
func truthKey(k int) string { return "truth:" + keyID(k) }
func cacheKeys(prefix string, n int) ([]string, error) {
	kb, err := keys.New(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for k := range n {
		if out[k], err = kb.Build(context.Background(), resource, keyID(k)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Kinds of logged events.
const (
	// reads
	opFetch   = "fetch"
	opGet     = "get"
	opMany    = "many"    // one key of a FetchMany
	opRefresh = "refresh" // Fetch with tiered.Reload(): a read, and a write of what it loaded
	// writes; the version is the truth's after the bump
	opSet    = "set"
	opDelete = "delete"
	opSetex  = "foreign-setex"
	opDel    = "foreign-del"
	// reads after quiescence
	opFinalGet   = "final-get"
	opFinalFetch = "final-fetch"
	// what else a worker saw
	opLoad  = "load"  // the loader read the truth: V at [Start, End]
	opInval = "inval" // an invalidation applied at Start; K -1 = a flush of everything
	opUp    = "up"    // Client.RedisUp turned true at Start
	opDown  = "down"  // Client.RedisUp turned false at Start
	opStats = "stats" // Err holds the Client's Stats as JSON
)

// foreign is the process number of the foreign writer (the coordinator).
const foreign = -1

// Op is one logged event. Times are wall-clock nanoseconds
// (time.Now().UnixNano()), comparable across processes on one machine.
type Op struct {
	P     int    `json:"p"`
	K     int    `json:"k"`
	Kind  string `json:"o"`
	Start int64  `json:"s"`
	End   int64  `json:"e"`
	V     int64  `json:"v,omitempty"` // version read or written; 0 = not found
	Err   string `json:"x,omitempty"` // error class; "" = success
}

func (o Op) ok() bool { return o.Err == "" }

func isRead(kind string) bool {
	switch kind {
	case opFetch, opGet, opMany, opRefresh:
		return true
	}
	return false
}

func isWrite(kind string) bool {
	switch kind {
	case opSet, opDelete, opSetex, opDel, opRefresh:
		return true
	}
	return false
}

// errClass names an error for the totals, followed by its message: ""
// for none.
func errClass(err error) string {
	class := "other"
	switch {
	case err == nil:
		return ""
	case errors.Is(err, tiered.ErrUnavailable):
		class = "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		class = "deadline"
	case errors.Is(err, context.Canceled):
		class = "canceled"
	case errors.Is(err, tiered.ErrClosed):
		class = "closed"
	case errors.Is(err, tiered.ErrLoaderPanic):
		class = "loader-panic"
	case errors.Is(err, tiered.ErrNotFound):
		class = "not-found"
	}
	return class + ": " + err.Error()
}

func now() int64 { return time.Now().UnixNano() }

// writeOps writes ops as JSON lines.
func writeOps(path string, ops []Op) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	for _, o := range ops {
		if err := enc.Encode(o); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readOps reads what writeOps wrote.
func readOps(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []Op
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for {
		var o Op
		if err := dec.Decode(&o); err != nil {
			if errors.Is(err, io.EOF) {
				return ops, nil
			}
			return ops, fmt.Errorf("%s: %w", path, err)
		}
		ops = append(ops, o)
	}
}
