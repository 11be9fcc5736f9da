package tiered_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

func TestMiddleware(t *testing.T) {
	kb, err := keys.New("fastapi_template", keys.EnforceTenantIsolation())
	if err != nil {
		t.Fatal(err)
	}
	fromHeader := func(r *http.Request) (string, bool) {
		id := r.Header.Get("X-Tenant-ID")
		return id, id != ""
	}
	var key, rid string
	var keyErr error
	h := tiered.Middleware(fromHeader)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, keyErr = kb.Build(r.Context(), "user", "uuid-456")
		rid, _ = tiered.RequestIDFrom(r.Context())
	}))

	req := httptest.NewRequest("GET", "/users/uuid-456", nil)
	req.Header.Set("X-Tenant-ID", "org-123")
	req.Header.Set(tiered.RequestIDHeader, "req-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if keyErr != nil || key != "fastapi_template:tenant-org-123:user:uuid-456:v1" {
		t.Fatalf("key = %q, %v", key, keyErr)
	}
	if rid != "req-1" || rec.Header().Get(tiered.RequestIDHeader) != "req-1" {
		t.Fatalf("request id %q, echoed %q", rid, rec.Header().Get(tiered.RequestIDHeader))
	}

	// No tenant: never the global one.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/users/uuid-456", nil))
	if !errors.Is(keyErr, keys.ErrTenantRequired) {
		t.Fatalf("key without a tenant = %q, %v; want ErrTenantRequired", key, keyErr)
	}
	if rid == "" || rec.Header().Get(tiered.RequestIDHeader) != rid {
		t.Fatalf("no request id made: %q", rid)
	}
}
