package local

// Test hooks: the package's internals that black-box tests measure against.
const (
	EntryOverhead = entryOverhead
	ClockTick     = clockTick
)
