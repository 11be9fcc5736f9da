package bus

// Up reports whether the bus is up: Up was reported, and Down not since.
func (b *Bus) Up() bool { return b.up.Load() }
