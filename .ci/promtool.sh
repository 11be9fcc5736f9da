#!/usr/bin/env bash
# Checks the Prometheus rules in ops/prometheus with promtool: the rule
# files' syntax, PromQL and templates (promtool check rules), that every
# alert has unit tests in which it fires and in which it stays quiet, and
# the tests themselves (promtool test rules); then that the Grafana
# dashboard is valid JSON. When promtool is not on PATH it installs
# Debian's prometheus package, which ships it. Runs from any directory.
# (compat/opscheck checks that the same files use only series the library
# exposes.)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

install_promtool() {
	command -v promtool >/dev/null && return
	log "installing promtool (Debian's prometheus package)"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

install_promtool
promtool --version 2>&1 | head -n 1

rules=()
for f in ops/prometheus/*.yml; do
	case $f in
	*_test.yml) ;;
	*) rules+=("$f") ;;
	esac
done
log "promtool check rules ${rules[*]}"
promtool check rules "${rules[@]}"

log "every alert fires and stays quiet in ops/prometheus/alerts_test.yml"
alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' ops/prometheus/alerts.yml)
[ -n "$alerts" ] || { echo "no alerts found in ops/prometheus/alerts.yml" >&2; exit 1; }
# Per alert name: the number of cases that expect alerts and of cases that
# expect none.
coverage=$(awk '
	/^ *alertname:/ { name = $2 }
	/^ *exp_alerts: *\[\] *(#.*)?$/ { quiet[name]++; next }
	/^ *exp_alerts: *(#.*)?$/ { fires[name]++ }
	END { for (n in fires) print n, "fires", fires[n]; for (n in quiet) print n, "quiet", quiet[n] }
' ops/prometheus/alerts_test.yml)
untested=0
for a in $alerts; do
	for kind in fires quiet; do
		if ! grep -q "^$a $kind " <<<"$coverage"; then
			[ "$kind" = fires ] && what="fires" || what="stays quiet"
			echo "alert $a: no test case in which it $what" >&2
			untested=1
		fi
	done
done
[ "$untested" = 0 ]
echo "$(wc -w <<<"$alerts") alerts, each tested firing and quiet"

log "promtool test rules ops/prometheus/alerts_test.yml"
promtool test rules ops/prometheus/alerts_test.yml

log "ops/grafana/tieredcache.json is JSON"
python3 -m json.tool ops/grafana/tieredcache.json >/dev/null
echo ok
