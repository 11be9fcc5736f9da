package tiered

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/tieredcache/tieredcache/keys"
)

// requestIDHeader carries the request id Middleware reads and echoes.
const requestIDHeader = "X-Request-ID"

// Middleware returns net/http middleware that puts each request's tenant
// and request id into its context, as the Python template's middleware
// does, for the cache's keys and debug logs. tenant extracts the tenant (a
// header, a token claim); a request without one gets none, never the
// global tenant, so that with tenant isolation enforced its cache calls
// fail with ErrTenantRequired. The request id is the X-Request-ID header,
// or a new one, and is echoed in the response.
func Middleware(tenant func(*http.Request) (string, bool)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			if tenant != nil {
				if id, ok := tenant(r); ok && id != "" {
					ctx = keys.WithTenant(ctx, id)
				}
			}
			rid := r.Header.Get(requestIDHeader)
			if rid == "" || len(rid) > 200 {
				var b [8]byte
				_, _ = rand.Read(b[:])
				rid = hex.EncodeToString(b[:])
			}
			w.Header().Set(requestIDHeader, rid)
			next.ServeHTTP(w, r.WithContext(withRequestID(ctx, rid)))
		})
	}
}
