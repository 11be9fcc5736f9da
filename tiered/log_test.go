package tiered_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestDebugOperationLog(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, tiered.Options{Logger: logger})
	ctx := tiered.WithRequestID(keys.WithTenant(context.Background(), "org-456"), "req-123")
	if err := e.users.Set(ctx, "1", User{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	awaitL1(t, e.client, e.users, ctx, "1")
	if _, err := e.users.Get(ctx, "absent"); err == nil {
		t.Fatal("absent key found")
	}
	var sawHit, sawMiss, sawSet bool
	for _, line := range strings.Split(logs.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["request_id"] == nil {
			continue
		}
		if rec["request_id"] != "req-123" || rec["org_id"] != "org-456" || rec["resource_type"] != "user" {
			t.Fatalf("log line lacks the request's fields: %v", rec)
		}
		if _, ok := rec["duration_ms"].(float64); !ok {
			t.Fatalf("no duration_ms: %v", rec)
		}
		switch {
		case rec["operation"] == "cache_get" && rec["cache_hit"] == true && rec["tier"] == "l1":
			sawHit = true
		case rec["operation"] == "cache_get" && rec["cache_hit"] == false:
			sawMiss = true
		case rec["operation"] == "cache_set":
			sawSet = true
		}
	}
	if !sawHit || !sawMiss || !sawSet {
		t.Fatalf("hit %v, miss %v, set %v in logs:\n%s", sawHit, sawMiss, sawSet, logs)
	}
}

func TestOperationLogOffByDefault(t *testing.T) {
	logs := &syncBuffer{}
	e := newEnv(t, tiered.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	ctx := context.Background()
	_, _ = e.users.Get(ctx, "absent")
	if logs.Contains("cache_get") {
		t.Fatalf("operation logged at info level:\n%s", logs)
	}
}
