package envelope_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tieredcache/tieredcache/internal/envelope"
	"github.com/tieredcache/tieredcache/internal/pythontest"
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

// needPython returns a python3 with Pydantic 2 (see pythontest.Need).
func needPython(t *testing.T) string { return pythontest.Need(t) }
