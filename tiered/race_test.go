//go:build race

package tiered_test

// raceEnabled is set when the race detector runs, which adds allocations
// of its own.
const raceEnabled = true
