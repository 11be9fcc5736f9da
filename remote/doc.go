// Package remote is the shared tier on its own: values in Redis, written
// so that every process holding a copy hears of the change, and the
// invalidation message format that any service, in any language, can
// publish to make those processes drop their copies.
//
// A [Store] reads and writes values. Each write is fenced: a Set that
// fails or times out returns only once Redis can no longer apply it late
// ([ErrLate] says it may still have landed before that), and each write
// removes the key's load lease (package lock), so that a load that started
// before the write never caches an older value. With a channel configured,
// each write then publishes a [Message] on it.
//
// Package tiered uses the same implementation, with batched forms of
// these calls, under its in-process tier.
package remote
