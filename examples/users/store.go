package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tieredcache/tieredcache/tiered"
)

// errEmailTaken is returned when a write would give two users one email.
var errEmailTaken = errors.New("user with this email already exists")

// store is the users table in PostgreSQL, the source of truth.
type store struct {
	pool  *pgxpool.Pool
	table string // quoted identifier
	// reads counts the queries the cache's loaders make (user, users),
	// so that the tests can tell a hit from a load.
	reads atomic.Int64
}

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// openStore returns the store of table, creating the table (the template's
// app_user, without the columns this example does not use) if it is
// missing.
func openStore(ctx context.Context, pool *pgxpool.Pool, table string) (*store, error) {
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("table name %q: want lower-case letters, digits and _", table)
	}
	s := &store{pool: pool, table: pgx.Identifier{table}.Sanitize()}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	email text NOT NULL UNIQUE,
	name text NOT NULL,
	kratos_identity_id uuid UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (created_at)`, s.table, pgx.Identifier{table + "_created_at_idx"}.Sanitize())
	if _, err := pool.Exec(ctx, ddl); err != nil {
		return nil, fmt.Errorf("create table %s: %w", s.table, err)
	}
	return s, nil
}

// columns are selected in the order scan reads them.
const columns = "email, name, kratos_identity_id, id, created_at, updated_at"

func scan(row pgx.Row) (User, error) {
	var u User
	if err := row.Scan(&u.Email, &u.Name, &u.KratosIdentityID, &u.ID, &u.CreatedAt, &u.UpdatedAt); err != nil {
		return User{}, err
	}
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, nil
}

func scanRow(row pgx.CollectableRow) (User, error) { return scan(row) }

// user loads one user: the cache's loader, with the shape Fetch and Wrap
// take. A missing user is tiered.ErrNotFound, which Fetch returns without
// caching anything.
func (s *store) user(ctx context.Context, id string) (User, error) {
	s.reads.Add(1)
	u, err := scan(s.pool.QueryRow(ctx, "SELECT "+columns+" FROM "+s.table+" WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", id, tiered.ErrNotFound)
	}
	return u, err
}

// users loads the users of ids in one query: FetchMany's loader. Ids with no
// user are absent from the result.
func (s *store) users(ctx context.Context, ids []string) (map[string]User, error) {
	s.reads.Add(1)
	rows, err := s.pool.Query(ctx, "SELECT "+columns+" FROM "+s.table+" WHERE id = ANY($1::uuid[])", ids)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return nil, err
	}
	out := make(map[string]User, len(list))
	for _, u := range list {
		out[u.ID] = u
	}
	return out, nil
}

// querier is what a pool and a transaction have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// recentLocked returns the n most recently created users, in tx, with
// their rows locked against writes (FOR SHARE) until tx ends.
func (s *store) recentLocked(ctx context.Context, tx pgx.Tx, n int) ([]User, error) {
	rows, err := tx.Query(ctx, "SELECT "+columns+" FROM "+s.table+" ORDER BY created_at DESC LIMIT $1 FOR SHARE", n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanRow)
}

func (s *store) create(ctx context.Context, email, name string) (User, error) {
	u, err := scan(s.pool.QueryRow(ctx,
		"INSERT INTO "+s.table+" (email, name) VALUES ($1, $2) RETURNING "+columns, email, name))
	return u, writeError(err)
}

// update sets the fields given (nil: unchanged) of user id through q (the
// pool, or a transaction) and returns the row as it now is.
func (s *store) update(ctx context.Context, q querier, id string, email, name *string) (User, error) {
	u, err := scan(q.QueryRow(ctx, "UPDATE "+s.table+
		" SET email = COALESCE($2, email), name = COALESCE($3, name), updated_at = now() WHERE id = $1 RETURNING "+columns,
		id, email, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", id, tiered.ErrNotFound)
	}
	return u, writeError(err)
}

// remove deletes user id and reports whether it existed.
func (s *store) remove(ctx context.Context, id string) (bool, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM "+s.table+" WHERE id = $1", id)
	return tag.RowsAffected() > 0, err
}

// writeError turns a unique violation into errEmailTaken.
func writeError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return errEmailTaken
	}
	return err
}
