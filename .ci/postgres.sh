#!/usr/bin/env bash
# A PostgreSQL for the tests of examples/ (the users service).
#
#   .ci/postgres.sh [ENVFILE]   find or start one; print, or write to ENVFILE,
#                               the lines that tell the tests where it is:
#                                 export DATABASE_URL=postgres://...
#                               and, when this script started a server:
#                                 export CI_POSTGRES_DIR=<dir>
#                                 export CI_POSTGRES_PID=<postmaster pid>
#   .ci/postgres.sh stop [DIR]  stop a server it started (DIR defaults to
#                               $CI_POSTGRES_DIR) and remove its directory
#
# In order: DATABASE_URL when it is set and answers; the server on
# 127.0.0.1:5432 when it lets user postgres in without a password (trust),
# as a developer machine or a CI service container has it; otherwise (or
# always, with CI_POSTGRES_OWN=1) a throwaway cluster, initdb'ed with trust authentication in a temporary
# directory, listening on a free loopback port. The system's own cluster is
# never started or reconfigured. The database the URL names ("test") is
# created when missing. Progress goes to stderr; stdout carries only the
# export lines.
#
# It installs Debian's postgresql package when psql or initdb is missing.
# As root, the throwaway cluster runs as user postgres (PostgreSQL refuses
# to run as root).
set -euo pipefail

DB=test

log() { printf '== postgres: %s\n' "$*" >&2; }
die() { printf 'postgres: %s\n' "$*" >&2; exit 1; }

# pg_bin NAME: the path of a PostgreSQL server program, from PATH or from
# the newest /usr/lib/postgresql/<version>/bin.
pg_bin() {
	if command -v "$1" >/dev/null; then
		command -v "$1"
		return
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/$1" ] || return 1
	echo "$d/$1"
}

install_postgres() {
	command -v psql >/dev/null && pg_bin initdb >/dev/null && return
	log "installing postgresql"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
	command -v psql >/dev/null || die "psql still not on PATH after installing postgresql"
	pg_bin initdb >/dev/null || die "initdb not found after installing postgresql"
}

# answers URL: a query over URL succeeds, within a few seconds.
answers() { PGCONNECT_TIMEOUT=5 psql "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1; }

# ensure_db URL_OF_POSTGRES_DB: database $DB exists on that server.
ensure_db() {
	local have
	have=$(psql "$1" -XAtqc "SELECT 1 FROM pg_database WHERE datname = '$DB'")
	if [ "$have" != 1 ]; then
		log "creating database $DB"
		psql "$1" -XAtqc "CREATE DATABASE $DB" >/dev/null
	fi
}

free_port() {
	local p
	for _ in $(seq 200); do
		p=$((23000 + RANDOM % 6000))
		(echo >/dev/tcp/127.0.0.1/"$p") 2>/dev/null && continue
		echo "$p"
		return
	done
	die "no free port"
}

# as_owner CMD...: runs CMD as the cluster's owner: postgres when root.
as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

stop() {
	local dir=${1:-${CI_POSTGRES_DIR:-}}
	[ -n "$dir" ] || die "stop: no directory given and CI_POSTGRES_DIR is unset"
	[ -d "$dir/data" ] || die "stop: $dir/data not found"
	as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}

# The throwaway cluster: its directory, port and postmaster pid.
dir="" port="" pid=""

# abandon stops and removes a throwaway cluster that did not get going.
abandon() {
	[ -n "$dir" ] || return 0
	if [ -d "$dir/data" ]; then
		as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
}

# start_throwaway: initdb a cluster in a temporary directory and start it;
# sets dir, port and pid.
start_throwaway() {
	local initdb pg_ctl
	initdb=$(pg_bin initdb) || die "initdb not found"
	pg_ctl=$(pg_bin pg_ctl) || die "pg_ctl not found"
	if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
		die "running as root and there is no user postgres to run the server as"
	fi
	# Whatever fails from here leaves nothing running.
	trap abandon EXIT
	dir=$(mktemp -d "${TMPDIR:-/tmp}/postgres.XXXXXX")
	if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
	port=$(free_port)
	as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
	# fsync off: the data is thrown away, and the tests run faster.
	as_owner "$pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
		start >/dev/null || die "the server did not start: $(tail -n 5 "$dir/postgres.log")"
	pid=$(head -n 1 "$dir/data/postmaster.pid")
}

start() {
	local envfile=${1:-}
	install_postgres
	local url=""
	if [ -n "${DATABASE_URL:-}" ] && [ "${CI_POSTGRES_OWN:-}" != 1 ]; then
		if answers "$DATABASE_URL"; then
			log "using DATABASE_URL (it answers)"
			url=$DATABASE_URL
		else
			log "DATABASE_URL does not answer; looking further"
		fi
	fi
	if [ -n "$url" ] || [ "${CI_POSTGRES_OWN:-}" = 1 ]; then
		: # found, or a cluster of our own below
	elif answers "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"; then
		log "using the server on 127.0.0.1:5432"
		ensure_db "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		url="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
	fi
	if [ -z "$url" ]; then
		if [ "${CI_POSTGRES_OWN:-}" = 1 ]; then
			log "CI_POSTGRES_OWN=1: starting a server of our own"
		elif (echo >/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
			log "the server on 127.0.0.1:5432 does not let postgres in without a password; starting one of our own"
		fi
		start_throwaway
		ensure_db "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
		url="postgres://postgres@127.0.0.1:$port/$DB?sslmode=disable"
		log "started $("$(pg_bin pg_ctl)" --version | sed 's/^pg_ctl (PostgreSQL) /PostgreSQL /') on 127.0.0.1:$port (pid $pid, data in $dir)"
	fi
	answers "$url" || die "$url does not answer"
	trap - EXIT

	local lines
	lines="export DATABASE_URL='$url'"
	if [ -n "$dir" ]; then
		lines+=$(printf "\nexport CI_POSTGRES_DIR='%s'\nexport CI_POSTGRES_PID=%s" "$dir" "$pid")
	fi
	if [ -n "$envfile" ]; then
		printf '%s\n' "$lines" >"$envfile"
	else
		printf '%s\n' "$lines"
	fi
}

case "${1:-}" in
stop) stop "${2:-}" ;;
start) start "${2:-}" ;;
*) start "${1:-}" ;;
esac
