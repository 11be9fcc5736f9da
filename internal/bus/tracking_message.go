package bus

import (
	"github.com/tieredcache/tieredcache/internal/wire"

	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// trackingChannel is where Redis sends the invalidations of a RESP2
// tracking client to its redirect target.
const trackingChannel = "__redis__:invalidate"

// nullPayloadError is the error go-redis v9.23 returns from Receive for a
// pub/sub message whose payload is a null bulk string (pubsub.go, newMessage),
// which is how Redis tells RESP2 tracking clients that everything may have
// changed (FLUSHALL, FLUSHDB). No client can PUBLISH a null, so on a
// tracking connection it always comes from Redis. The tests pin this text.
const nullPayloadError = "redis: unsupported pubsub message payload: <nil>"

// nullPayload is what receive returns for a null invalidation.
type nullPayload struct{}

// unreadable is what receive returns for a reply go-redis read but could
// not turn into a message (it panics on some shapes, pubsub.go newMessage).
type unreadable struct{ err error }

// receive is PubSub.ReceiveTimeout, with the null invalidation and
// unreadable replies turned into values and never into a panic. Other
// errors go-redis returns for a reply it does not know end the session,
// like a lost connection: the resubscription that follows is a gap.
func receive(ctx context.Context, ps *redis.PubSub, timeout time.Duration) (msg any, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = unreadable{fmt.Errorf("%w: unreadable pub/sub reply: %v", wire.ErrMalformed, r)}, nil
		}
	}()
	msg, err = ps.ReceiveTimeout(ctx, timeout)
	if err != nil && err.Error() == nullPayloadError {
		return nullPayload{}, nil
	}
	return msg, err
}

// trackedKeys returns the keys of an invalidation message. Redis sends
// them as an array, even for one key; a plain string payload was published
// by a client, not sent by Redis.
func trackedKeys(m *redis.Message) ([]string, error) {
	switch {
	case m.PayloadSlice == nil:
		return nil, fmt.Errorf("%w: %s message with a string payload (%d bytes), not an array of keys",
			wire.ErrMalformed, trackingChannel, len(m.Payload))
	case len(m.PayloadSlice) == 0:
		return nil, fmt.Errorf("%w: %s message with no keys", wire.ErrMalformed, trackingChannel)
	}
	return m.PayloadSlice, nil
}

// invalidate passes on the keys of an invalidation message. b.mu is held.
func (b *Bus) invalidate(m *redis.Message) {
	keys, err := trackedKeys(m)
	if err != nil {
		b.cfg.Handler.Malformed(err)
		return
	}
	b.cfg.Handler.Invalidate(keys)
}

// flushAll reports that anything may have changed.
func (b *Bus) flushAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.cfg.Handler.Invalidate(nil)
	}
}

// unreadable reports a reply that go-redis could not read. On a tracking
// connection it may have been an invalidation, so anything may have
// changed.
func (b *Bus) unreadable(l *link, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.cfg.Handler.Malformed(err)
	if l.track {
		b.cfg.Handler.Invalidate(nil)
	}
}
