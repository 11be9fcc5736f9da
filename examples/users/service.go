package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tieredcache/tieredcache/keys"
	"github.com/tieredcache/tieredcache/tiered"
)

// appName is the Python template's, the default of CACHE_KEY_PREFIX.
const appName = "fastapi_template"

// maxBatch is the most ids GET /users?ids= takes.
const maxBatch = 100

// startTimeout bounds connecting, creating the table and warming up.
const startTimeout = time.Minute

// config is what main reads from the environment.
type config struct {
	DatabaseURL string
	Table       string // the users table, created if missing
	Warm        int    // users to warm the cache with at start
	Logger      *slog.Logger
}

// app is one instance of the service: a PostgreSQL pool, the users table
// and a tiered.Client configured from the template's environment
// variables (REDIS_URL, CACHE_KEY_PREFIX, ENFORCE_TENANT_ISOLATION ...).
type app struct {
	pool     *pgxpool.Pool
	db       *store
	client   *tiered.Client
	users    *tiered.Cache[User]
	current  func(ctx context.Context, id string) (User, error) // the decorator pattern
	isolated bool                                               // ENFORCE_TENANT_ISOLATION
	metrics  http.Handler
	log      *slog.Logger
}

// open connects to PostgreSQL and Redis, creates the users table if it is
// missing and warms the cache.
func open(ctx context.Context, cfg config) (_ *app, err error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	a := &app{log: cfg.Logger}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.pool, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err = a.pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	if a.db, err = openStore(ctx, a.pool, cfg.Table); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	a.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if a.client, err = tiered.NewFromEnv(appName, tiered.Options{Registerer: reg, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if a.users, err = tiered.NewCache[User](a.client, "user"); err != nil {
		return nil, err
	}
	// Pattern 2, the decorator: the loader with the cache in front of it,
	// called like the loader itself.
	a.current = a.users.Wrap(a.db.user)
	a.isolated = enforced(os.Getenv("ENFORCE_TENANT_ISOLATION"))
	if cfg.Warm > 0 {
		if err := a.warm(ctx, cfg.Warm); err != nil {
			// As the template does: a cold cache is no reason not to start.
			a.log.Warn("cache warm-up failed", "error", err)
		}
	}
	return a, nil
}

// enforced reads ENFORCE_TENANT_ISOLATION as NewFromEnv does (true unless
// set to one of Pydantic's false values); NewFromEnv refuses anything else.
func enforced(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "0", "no", "off", "f", "n":
		return false
	}
	return true
}

// Close closes the cache and the database pool.
func (a *app) Close() {
	if a.client != nil {
		_ = a.client.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// warm puts the n most recently created users in the cache (the template's
// cache warming). The cache is written while the rows are locked against
// writes (SELECT ... FOR SHARE): an update of one of them waits, and its
// own cache write comes after this one. A Warm of rows read without the
// lock could land after another instance's update had invalidated the key,
// and keep the old row cached until its TTL.
//
// Keys are per tenant when isolation is enforced, and a user belongs to no
// single tenant here, so warm-up fills the global tenant's keys, the ones
// requests read when isolation is off.
func (a *app) warm(ctx context.Context, n int) error {
	if a.isolated {
		a.log.Info("cache warm-up skipped: tenant isolation is enforced, so user keys are per organization")
		return nil
	}
	return pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		list, err := a.db.recentLocked(ctx, tx, n)
		if err != nil {
			return err
		}
		values := make(map[string]User, len(list))
		for _, u := range list {
			values[u.ID] = u
		}
		if err := a.users.Warm(ctx, values); err != nil {
			return err
		}
		a.log.Info("cache warmed", "resource_type", "user", "count", len(values))
		return nil
	})
}

// handler routes the API. Every route but /metrics runs behind
// tiered.Middleware, which puts the request's tenant and request id into
// its context: the cache builds its keys and logs from there.
func (a *app) handler() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("POST /users", a.createUser)
	api.HandleFunc("GET /users", a.getUsers)
	api.HandleFunc("GET /users/{id}", a.getUser)
	api.HandleFunc("PUT /users/{id}", a.replaceUser)
	api.HandleFunc("PATCH /users/{id}", a.patchUser)
	api.HandleFunc("DELETE /users/{id}", a.deleteUser)
	api.HandleFunc("GET /me", a.me)

	root := http.NewServeMux()
	root.Handle("GET /metrics", a.metrics)
	root.Handle("/", tiered.Middleware(a.tenant)(a.requireTenant(api)))
	return root
}

// tenant is the request's organization, from the org_id query parameter
// as the template's tenant middleware reads it (a real service takes it
// from a verified token and checks the membership). Like the template, it
// reads none unless isolation is enforced, so that both services build the
// same keys.
func (a *app) tenant(r *http.Request) (string, bool) {
	if !a.isolated {
		return "", false
	}
	return canonicalUUID(r.URL.Query().Get("org_id"))
}

// requireTenant answers as the template does when isolation is enforced
// and the request names no organization: before any work is done.
func (a *app) requireTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := keys.TenantFrom(r.Context()); a.isolated && !ok {
			if r.URL.Query().Has("org_id") {
				detail(w, http.StatusBadRequest, "Invalid organization ID format in query")
				return
			}
			detail(w, http.StatusForbidden, "Organization context required but not provided")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// getUser is pattern 1, cache-aside: Fetch returns the cached user, or
// loads it from PostgreSQL on a miss (one load per key across every
// instance) and caches it.
func (a *app) getUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	u, err := a.users.Fetch(r.Context(), id, a.db.user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// me returns the authenticated user (X-User-ID, as the template's auth
// proxy sets it) through the decorated loader.
func (a *app) me(w http.ResponseWriter, r *http.Request) {
	id, ok := canonicalUUID(r.Header.Get("X-User-ID"))
	if !ok {
		detail(w, http.StatusUnauthorized, "Authentication required")
		return
	}
	u, err := a.current(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// getUsers is pattern 4, the batch read: GET /users?ids=a,b,c returns the
// users found, in the order asked. The cached ones come from the cache in
// one round trip, the others from one query, and are cached.
func (a *app) getUsers(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("ids")
	if raw == "" {
		detail(w, http.StatusUnprocessableEntity, "query parameter ids is required: ids=<uuid>,<uuid>,...")
		return
	}
	parts := strings.Split(raw, ",")
	if len(parts) > maxBatch {
		detail(w, http.StatusUnprocessableEntity, fmt.Sprintf("at most %d ids", maxBatch))
		return
	}
	ids := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, p := range parts {
		id, ok := canonicalUUID(strings.TrimSpace(p))
		if !ok {
			detail(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid user id %q: want a UUID", p))
			return
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	found, err := a.users.FetchMany(r.Context(), ids, a.db.users)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]User, 0, len(found))
	for _, id := range ids {
		if u, ok := found[id]; ok {
			out = append(out, u)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type userCreate struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// userUpdate is the template's UserUpdate: absent (or null) fields stay.
type userUpdate struct {
	Email *string `json:"email"`
	Name  *string `json:"name"`
}

// readUserCreate reads and validates a full user (POST, PUT), answering
// the request itself when it is not one.
func readUserCreate(w http.ResponseWriter, r *http.Request) (in userCreate, name string, ok bool) {
	if !readJSON(w, r, &in) {
		return in, "", false
	}
	name, ok = validName(in.Name)
	if !ok || !validEmail(in.Email) {
		detail(w, http.StatusUnprocessableEntity, "email must be an email address and name 1 to 100 characters")
		return in, "", false
	}
	return in, name, true
}

func (a *app) createUser(w http.ResponseWriter, r *http.Request) {
	in, name, ok := readUserCreate(w, r)
	if !ok {
		return
	}
	u, err := a.db.create(r.Context(), in.Email, name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

// replaceUser (PUT) writes the cache through: it updates the row and Sets
// the new value while the row's lock is held, before the commit, so that
// two concurrent PUTs of one user reach the cache in the order they
// reached the database. A commit that fails takes the value out again.
func (a *app) replaceUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	in, name, ok := readUserCreate(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	u, err := a.db.update(ctx, tx, id, &in.Email, &name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.users.Set(ctx, id, u); err != nil {
		// The cache dropped its copies and will delete the key everywhere
		// once Redis answers: readers fall back to the database.
		a.log.Warn("cache set failed", "id", id, "error", err)
	}
	if err := tx.Commit(ctx); err != nil {
		_ = a.users.Delete(context.WithoutCancel(ctx), id)
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// patchUser (PATCH) is pattern 3, invalidation on update: it commits the
// change, then Deletes the cached user; every instance drops its copy and
// the next read loads the new row. A load that read the old row before the
// Delete is not cached.
func (a *app) patchUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var in userUpdate
	if !readJSON(w, r, &in) {
		return
	}
	if in.Name != nil {
		name, ok := validName(*in.Name)
		if !ok {
			detail(w, http.StatusUnprocessableEntity, "name must be 1 to 100 characters")
			return
		}
		in.Name = &name
	}
	if in.Email != nil && !validEmail(*in.Email) {
		detail(w, http.StatusUnprocessableEntity, "email must be an email address")
		return
	}
	u, err := a.db.update(r.Context(), a.pool, id, in.Email, in.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.invalidate(r.Context(), id)
	writeJSON(w, http.StatusOK, u)
}

func (a *app) deleteUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	found, err := a.db.remove(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.invalidate(r.Context(), id)
	if !found {
		detail(w, http.StatusNotFound, "User not found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// invalidate deletes the cached user after a committed write.
func (a *app) invalidate(ctx context.Context, id string) {
	if err := a.users.Delete(context.WithoutCancel(ctx), id); err != nil {
		// Local copies are gone; other instances drop theirs when Redis
		// answers again, which the cache retries on its own.
		a.log.Warn("cache delete failed", "id", id, "error", err)
	}
}

// fail answers err as the template's handlers do.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		detail(w, http.StatusNotFound, "User not found")
	case errors.Is(err, errEmailTaken):
		detail(w, http.StatusConflict, "User with this email already exists")
	case errors.Is(err, keys.ErrTenantRequired):
		detail(w, http.StatusForbidden, "Organization context required but not provided")
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", w.Header().Get("X-Request-ID"), "error", err)
		detail(w, http.StatusInternalServerError, "Internal server error")
	}
}

// pathID reads the {id} of the path as a canonical UUID, or answers 422.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := canonicalUUID(r.PathValue("id"))
	if !ok {
		detail(w, http.StatusUnprocessableEntity, "invalid user id: want a UUID")
	}
	return id, ok
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		detail(w, http.StatusUnprocessableEntity, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// detail answers with FastAPI's error body, {"detail": "..."}.
func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"detail": msg})
}
