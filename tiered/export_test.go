package tiered

import "context"

// Test hooks: what black-box tests check against.

// Key returns the Redis key of id under the call's options.
func (c *Cache[V]) Key(ctx context.Context, id string, opts ...Option) (string, error) {
	key, _, _, err := c.keyOf(ctx, id, atGet, opts)
	return key, err
}

// RedisUp reports what Stats().RedisUp does.
func (c *Client) RedisUp() bool { return c.redisUp() }

var RequestIDFrom = requestIDFrom

const RequestIDHeader = requestIDHeader

var WithRequestID = withRequestID
