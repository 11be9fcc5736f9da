package surface_test

import (
	"testing"

	"github.com/tieredcache/tieredcache/internal/surface"
)

// maxExported is a ratchet on the module's public API: the count today. The
// goal is 100 (groupcache exports about 52, otter v2 about 79); lower this
// as exports go, never raise it without a reason in the commit.
const maxExported = 100

// TestPublicSurface counts the exported identifiers of the public
// packages and fails above the budget; -v lists them.
func TestPublicSurface(t *testing.T) {
	pkgs, err := surface.Count("../..")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for p, names := range pkgs {
		total += len(names)
		t.Logf("%-8s %3d %v", p, len(names), names)
	}
	t.Logf("total %d exported identifiers (budget %d)", total, maxExported)
	if total > maxExported {
		t.Errorf("%d exported identifiers, budget %d", total, maxExported)
	}
}
