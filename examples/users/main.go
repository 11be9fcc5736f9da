// Command users is a small users API over PostgreSQL that caches with
// tiered the way the Python FastAPI template caches with Redis, and shares
// its keys and values: run it beside the template on one Redis and the two
// read and invalidate each other's entries.
//
//	GET    /users/{id}       cache-aside: Fetch with the database loader
//	GET    /me               the decorator: Wrap around the database loader (X-User-ID)
//	GET    /users?ids=a,b,c  the batch read: FetchMany, one query for the misses
//	PUT    /users/{id}       update, then Set the new value (write-through)
//	PATCH  /users/{id}       update, then Delete the cached value (invalidation)
//	POST   /users, DELETE /users/{id}
//	GET    /metrics          the cache's Prometheus metrics, named as the template's
//
// At start it creates its table if missing and warms the cache with the
// most recently created users. Configuration is the template's environment:
//
//	DATABASE_URL              postgres://postgres@127.0.0.1:5432/test
//	REDIS_URL                 unset: no Redis, the in-process tier only
//	CACHE_KEY_PREFIX          fastapi_template
//	ENFORCE_TENANT_ISOLATION  true (then every request needs ?org_id=<uuid>)
//	REDIS_DEFAULT_TTL, REDIS_POOL_SIZE, REDIS_*_TIMEOUT  as the template's
//	USERS_TABLE               app_user
//	WARM_USERS                100
//	ADDR                      :8000
//	LOG_LEVEL                 info (debug logs every cache operation)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "users:", err)
		os.Exit(1)
	}
}

func run() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(env("LOG_LEVEL", "info"))); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	warm, err := strconv.Atoi(env("WARM_USERS", "100"))
	if err != nil || warm < 0 {
		return fmt.Errorf("WARM_USERS=%q: want a whole number", os.Getenv("WARM_USERS"))
	}
	cfg := config{
		DatabaseURL: env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
		Table:       env("USERS_TABLE", "app_user"),
		Warm:        warm,
		Logger:      log,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()

	srv := &http.Server{Addr: env("ADDR", ":8000"), Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", srv.Addr, "table", cfg.Table, "tenant_isolation", a.isolated)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
