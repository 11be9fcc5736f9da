// Package readmecheck holds the test that keeps README.md's Go code real:
// every ```go block is a complete Go file that must be gofmt'ed and build
// and vet cleanly against this module, and the quick start must be the
// package example tiered.Example, declaration for declaration. It has no
// code of its own; run it with go test ./internal/readmecheck.
package readmecheck
