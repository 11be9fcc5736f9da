package tiered

import (
	"slices"
	"testing"
	"time"
)

func TestRecentWritesRing(t *testing.T) {
	r := newRecentWrites(3)
	before := time.Now().Add(-time.Second)
	r.add("a", "b")
	if keys, complete := r.since(before); !slices.Equal(keys, []string{"b", "a"}) || !complete {
		t.Fatalf("since = %v, %v", keys, complete)
	}
	r.add("c", "a", "d") // overwrites the first a and b
	if keys, complete := r.since(before); !slices.Equal(keys, []string{"d", "a", "c"}) || complete {
		t.Fatalf("after wrapping: since = %v, %v", keys, complete)
	}
	if keys, complete := r.since(time.Now().Add(time.Second)); len(keys) != 0 || !complete {
		t.Fatalf("since the future = %v, %v", keys, complete)
	}
}
