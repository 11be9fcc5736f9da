// Package pythontest finds the Python the interop tests run: a python3
// with Pydantic 2, the Python template's own stack.
package pythontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Need returns a python3 with Pydantic 2: python3 on PATH, else one under
// $PYENV_ROOT (default ~/.pyenv) versions. Without one the test fails when
// CI=true and is skipped otherwise.
func Need(t testing.TB) string {
	t.Helper()
	var tried []string
	for _, p := range candidates() {
		out, err := exec.Command(p, "-c",
			"import pydantic, sys; print(pydantic.VERSION); sys.exit(int(pydantic.VERSION.split('.')[0]) < 2)").CombinedOutput()
		if err == nil {
			return p
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		tried = append(tried, fmt.Sprintf("%s (%s)", p, lines[len(lines)-1]))
	}
	msg := fmt.Sprintf("no python3 with pydantic 2 (tried: %s); install one with: python3 -m pip install 'pydantic>=2'", strings.Join(tried, "; "))
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s", msg)
	}
	t.Skipf("%s; skipping (with CI=true it fails)", msg)
	return ""
}

func candidates() []string {
	var c []string
	if p, err := exec.LookPath("python3"); err == nil {
		c = append(c, p)
	}
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".pyenv")
	}
	found, _ := filepath.Glob(filepath.Join(root, "versions", "*", "bin", "python3"))
	slices.Reverse(found) // newest first, roughly
	return append(c, found...)
}
