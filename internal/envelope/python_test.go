package envelope_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tieredcache/tieredcache/internal/envelope"
)

// Python readers of the shared Redis (json.loads, Pydantic's
// model_validate_json, a UTF-8 decode) refuse every envelope with the
// exception a cache reader catches, so the Python template counts a miss
// instead of serving the bytes as data; the same value before sealing, plain
// JSON, reads.
func TestPythonReadersRefuseEnvelopes(t *testing.T) {
	python := needPython(t)
	dir := t.TempDir()
	plain := []byte(`{"id":42,"email":"ada@example.com","name":"` + strings.Repeat("Ada Lovelace ", 100) + `"}`)
	files := []string{write(t, dir, "plain.json", plain)}
	for _, m := range modes() {
		m.cfg.MinSize = 1
		e := mustNew(t, m.cfg)
		for name, v := range map[string][]byte{"user": plain, "small": []byte(`{"id":1}`), "marker": []byte("\xff{}")} {
			stored, err := e.Seal(nil, redisKey, v)
			if err != nil {
				t.Fatal(err)
			}
			if envelope.IsEnveloped(stored) {
				files = append(files, write(t, dir, fmt.Sprintf("%s-%s.bin", m.name, name), stored))
			}
		}
	}
	if len(files) < 12 {
		t.Fatalf("only %d files to check", len(files))
	}
	cmd := exec.CommandContext(t.Context(), python, append([]string{filepath.Join("testdata", "readers.py")}, files...)...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8")
	out, err := cmd.CombinedOutput()
	out = bytes.ReplaceAll(out, []byte(dir+string(filepath.Separator)), nil)
	if err != nil {
		t.Fatalf("%s testdata/readers.py: %v\n%s", python, err, out)
	}
	t.Logf("%s:\n%s", python, out)
}

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// needPython returns a python3 with Pydantic 2: python3 on PATH, else one
// under ~/.pyenv/versions. Without one the test fails when CI=true and is
// skipped otherwise.
func needPython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range pythonCandidates() {
		out, err := exec.CommandContext(t.Context(), p, "-c",
			"import pydantic, sys; print(pydantic.VERSION); sys.exit(int(pydantic.VERSION.split('.')[0]) < 2)").CombinedOutput()
		if err == nil {
			return p
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		tried = append(tried, fmt.Sprintf("%s (%s)", p, lines[len(lines)-1]))
	}
	msg := fmt.Sprintf("no python3 with pydantic 2 (tried: %s); install one with: python3 -m pip install 'pydantic>=2'", strings.Join(tried, "; "))
	if os.Getenv("CI") == "true" {
		t.Fatalf("envelope: CI=true but %s", msg)
	}
	t.Skipf("envelope: %s; skipping (with CI=true it fails)", msg)
	return ""
}

func pythonCandidates() []string {
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
