// Package compat checks that the library interoperates with the Python
// FastAPI template it grew from, with that world's own tools: the
// template's PromQL dashboard queries run here on Prometheus's PromQL
// engine against what the library exposes. It is a module of its own so
// that Prometheus never enters the library's go.mod.
//
//	cd compat && go test ./...
package compat
