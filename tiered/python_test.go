package tiered_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tieredcache/tieredcache/internal/pythontest"
	"github.com/tieredcache/tieredcache/tiered"
)

// pythonReader reads a cached value as the Python template's cache reader
// does: bytes from Redis, json.loads, None is a miss, anything else is
// validated into the Pydantic model; a value that does not decode is a
// miss too (the template logs and reads through). It prints "miss" or the
// model's JSON.
const pythonReader = `
import json, sys
from pydantic import BaseModel

class User(BaseModel):
    id: str
    email: str

raw = sys.stdin.buffer.read()
try:
    data = json.loads(raw)
except Exception:
    print("miss")
    sys.exit(0)
if data is None:
    print("miss")
else:
    print(User.model_validate(data).model_dump_json())
`

// TestPythonReadsNegativeEntriesAsMisses: a cached absence is JSON null in
// Redis, which the Python template's reader takes for a miss, never for
// data; a value reads as the model, and an enveloped one as a miss.
func TestPythonReadsNegativeEntriesAsMisses(t *testing.T) {
	python := pythontest.Need(t)
	e := newEnv(t, tiered.Options{}, tiered.NegativeTTL(time.Minute))
	ctx := context.Background()
	missing := func(context.Context, string) (User, error) { return User{}, tiered.ErrNotFound }
	if _, err := e.users.Fetch(ctx, "ghost", missing); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatal(err)
	}
	if err := e.users.Set(ctx, "ada", User{ID: "ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	sealed, err := tiered.NewCache[User](e.client, "user", tiered.Encrypt("k", map[string][]byte{"k": bytes.Repeat([]byte{9}, 32)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := sealed.Set(ctx, "packed", User{ID: "packed", Email: "p@example.com"}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"ghost":  "miss",
		"ada":    `{"id":"ada","email":"ada@example.com"}`,
		"packed": "miss",
	} {
		raw, err := e.rdb.Get(ctx, e.key(t, ctx, id)).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, python, "-c", pythonReader)
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: python: %v\n%s", id, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s (%q in Redis): the Python reader got %s, want %s", id, raw, got, want)
		}
	}
}
