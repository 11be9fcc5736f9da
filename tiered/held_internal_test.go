package tiered

import (
	"testing"
	"unsafe"
)

// TestHeldStaysSmall: what the in-process tier keeps around each value is
// counted against its budget by an estimate (local's entryOverhead); the
// bookkeeping fields take 24 bytes, and must not grow unnoticed.
func TestHeldStaysSmall(t *testing.T) {
	if n := unsafe.Sizeof(held[struct{}]{}); n != 24 {
		t.Fatalf("held's own fields take %d bytes, want 24: check entryOverhead and the memory benchmark", n)
	}
}
