// Package opscheck checks the operations files in ops/ (the Grafana
// dashboard and the Prometheus alerting and recording rules) against the
// metrics the library really exposes: its tests start a Client on a real
// Redis, drive it, gather its registry and require every metric name and
// label the PromQL in ops/ uses to be among what was gathered, so that
// renaming a metric or a label breaks them. It lives in the compat module,
// which may depend on Prometheus's PromQL parser and engine.
//
//	cd compat && go test ./opscheck
package opscheck
