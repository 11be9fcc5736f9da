package store

import (
	"testing"
	"time"
)

// TestServerClockKeepsTheBestBound: a reply delayed on its way gives a
// poor lower bound of Redis's clock, which must not replace a good one;
// a bound ages by the drift allowance.
func TestServerClockKeepsTheBestBound(t *testing.T) {
	k := newServerClock()
	k.sample(1_000_000+100, 100) // offset 1 s, received at once
	k.sample(1_000_000+200, 100_200)
	if k.offset != 1_000_000-100_000*clockDrift/1e6 {
		t.Fatalf("a delayed reply moved the bound to %d", k.offset)
	}
	k.sample(1_000_000+300_000, 300_000) // a good sample again
	if k.offset != 1_000_000 {
		t.Fatalf("a good sample did not restore the bound: %d", k.offset)
	}
	d, ok := k.deadline(400_000, 250*time.Millisecond)
	if want := int64(400_000 + 249_000 + 1_000_000); !ok || d != want {
		t.Fatalf("deadline = %d, %v; want %d", d, ok, want)
	}
}
