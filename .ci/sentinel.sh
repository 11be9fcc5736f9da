#!/usr/bin/env bash
# A Redis Sentinel set-up for the tests: one master, one replica and three
# Sentinels (quorum 2) on free loopback ports, in a temporary directory.
#
#   .ci/sentinel.sh [ENVFILE]   start it; print, or write to ENVFILE, the
#                               lines that tell the tests where it is:
#                                 export REDIS_SENTINEL_ADDRS=h:p,h:p,h:p
#                                 export REDIS_SENTINEL_MASTER=<name>
#                                 export REDIS_SENTINEL_DIR=<dir>
#   .ci/sentinel.sh stop [DIR]  stop it (DIR defaults to $REDIS_SENTINEL_DIR)
#
# DIR/pids lists the servers' pids, one a line, for callers that stop them
# themselves. It returns once the three Sentinels agree on the master and
# each sees the replica and the two other Sentinels, so a failover can start
# at once. Progress goes to stderr; stdout carries only the export lines.
#
# It uses redis-server (and redis-sentinel, or redis-server --sentinel,
# for the Sentinels) from PATH, and installs Debian's packages when there
# is none.
set -euo pipefail

MASTER_NAME=${REDIS_SENTINEL_MASTER:-tiered}
DOWN_AFTER_MS=1000
FAILOVER_TIMEOUT_MS=10000

log() { printf '== sentinel: %s\n' "$*" >&2; }
die() { printf 'sentinel: %s\n' "$*" >&2; exit 1; }

stop() {
	local dir=${1:-${REDIS_SENTINEL_DIR:-}}
	[ -n "$dir" ] || die "stop: no directory given and REDIS_SENTINEL_DIR is unset"
	[ -f "$dir/pids" ] || die "stop: $dir/pids not found"
	local p
	while read -r p; do kill "$p" 2>/dev/null || true; done <"$dir/pids"
	while read -r p; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done <"$dir/pids"
	rm -rf "$dir"
}

install_redis() {
	command -v redis-server >/dev/null && return
	local pkgs="redis-server"
	command -v redis-sentinel >/dev/null || pkgs="redis-server redis-sentinel"
	log "installing $pkgs"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	# shellcheck disable=SC2086 # two package names
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $pkgs >/dev/null
}

# free_port prints a port nobody listens on, below the ephemeral range
# (32768 up) outgoing connections take their local ports from, and away from
# the ports .ci/run gives a Redis Cluster (20000-22699 and 10000 above).
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((23000 + RANDOM % 6000))
		(echo >/dev/tcp/127.0.0.1/"$p") 2>/dev/null && continue
		grep -qx "$p" "$dir/ports" 2>/dev/null && continue
		echo "$p" >>"$dir/ports"
		echo "$p"
		return
	done
	die "no free port"
}

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

await_ping() {
	for _ in $(seq 100); do
		cli "$1" ping 2>/dev/null | grep -q PONG && return
		sleep 0.1
	done
	tail -n 20 "$dir/$1/"*.log >&2 || true
	die "nothing answers on port $1"
}

# start_server PORT [args...]: a redis-server, daemonized, its pid listed.
start_server() {
	local port=$1; shift
	mkdir -p "$dir/$port"
	# No delay before a full resynchronisation: after a failover the old
	# master resyncs from the new one.
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
		--repl-diskless-sync-delay 0 \
		--daemonize yes --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" \
		--logfile "$dir/$port/redis.log" "$@"
	await_ping "$port"
	cat "$dir/$port/redis.pid" >>"$dir/pids"
}

# start_sentinel PORT MASTERPORT: a Sentinel watching the master. A
# Sentinel rewrites its configuration file, so each has its own.
start_sentinel() {
	local port=$1 mport=$2
	mkdir -p "$dir/$port"
	cat >"$dir/$port/sentinel.conf" <<-EOF
		port $port
		bind 127.0.0.1
		daemonize yes
		dir $dir/$port
		pidfile $dir/$port/sentinel.pid
		logfile $dir/$port/sentinel.log
		sentinel monitor $MASTER_NAME 127.0.0.1 $mport 2
		sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS
		sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS
		sentinel parallel-syncs $MASTER_NAME 1
	EOF
	if command -v redis-sentinel >/dev/null; then
		redis-sentinel "$dir/$port/sentinel.conf"
	else
		redis-server "$dir/$port/sentinel.conf" --sentinel
	fi
	await_ping "$port"
	cat "$dir/$port/sentinel.pid" >>"$dir/pids"
}

# agreed SENTINELPORT MASTERPORT: the Sentinel names the master, sees one
# healthy replica and two other Sentinels, and has its quorum.
agreed() {
	local s=$1 mport=$2
	[ "$(cli "$s" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | tr '\n' ' ')" = "127.0.0.1 $mport " ] || return 1
	local replicas
	replicas=$(cli "$s" --no-raw sentinel replicas "$MASTER_NAME" 2>/dev/null) || return 1
	[ "$(printf '%s\n' "$replicas" | grep -A1 '"flags"' | grep -c '"slave"$')" = 1 ] || return 1
	printf '%s\n' "$replicas" | grep -A1 '"master-link-status"' | grep -q '"ok"$' || return 1
	[ "$(cli "$s" sentinel sentinels "$MASTER_NAME" 2>/dev/null | grep -cx 'name')" = 2 ] || return 1
	cli "$s" sentinel ckquorum "$MASTER_NAME" 2>/dev/null | grep -q '^OK'
}

start() {
	local envfile=${1:-}
	install_redis
	command -v redis-cli >/dev/null || die "redis-cli not on PATH"
	dir=$(mktemp -d "${TMPDIR:-/tmp}/redis-sentinel.XXXXXX")
	: >"$dir/pids"
	# Whatever fails from here leaves nothing running.
	started=""
	trap '[ -n "$started" ] || stop "$dir"' EXIT

	local mport rport
	mport=$(free_port)
	rport=$(free_port)
	start_server "$mport"
	start_server "$rport" --replicaof 127.0.0.1 "$mport"
	local sports=() addrs=()
	for _ in 1 2 3; do
		local sp
		sp=$(free_port)
		start_sentinel "$sp" "$mport"
		sports+=("$sp")
		addrs+=("127.0.0.1:$sp")
	done

	# Sentinels find the replica through the master's INFO and each other
	# through hello messages every 2 s: allow them a minute on a busy host.
	local ok=""
	for _ in $(seq 600); do
		ok=yes
		for s in "${sports[@]}"; do agreed "$s" "$mport" || { ok=""; break; }; done
		[ -n "$ok" ] && break
		sleep 0.1
	done
	if [ -z "$ok" ]; then
		for s in "${sports[@]}"; do tail -n 20 "$dir/$s/sentinel.log" >&2 || true; done
		die "the Sentinels did not agree within a minute"
	fi
	started=yes

	local joined
	joined=$(IFS=,; echo "${addrs[*]}")
	log "master 127.0.0.1:$mport, replica 127.0.0.1:$rport, Sentinels $joined (master name $MASTER_NAME)"
	local lines
	lines=$(printf 'export REDIS_SENTINEL_ADDRS=%s\nexport REDIS_SENTINEL_MASTER=%s\nexport REDIS_SENTINEL_DIR=%s\n' \
		"$joined" "$MASTER_NAME" "$dir")
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
