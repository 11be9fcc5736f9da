package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// removeKeys deletes every key under prefix from the Redis at addr: the
// values, and the lease and staging keys beside them, which start with
// "{" + prefix (a Redis Cluster hash tag). It says what it removed, and
// complains of any key still there after.
func removeKeys(addr, prefix string) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	patterns := []string{prefix + "*", "{" + prefix + "*"}
	removed, left := 0, 0
	for _, pattern := range patterns {
		n, err := eachKey(ctx, rdb, pattern, func(keys []string) error { return rdb.Unlink(ctx, keys...).Err() })
		removed += n
		if err == nil {
			n, err = eachKey(ctx, rdb, pattern, func([]string) error { return nil })
			left += n
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tiered-demo: removing the demo's keys (%s) from %s: %v\n", pattern, addr, err)
			return
		}
	}
	if left > 0 {
		fmt.Fprintf(os.Stderr, "tiered-demo: %d keys under %s still in %s after clean-up\n", left, prefix, addr)
		return
	}
	fmt.Printf("Removed the demo's %d keys (%s*) from the Redis at %s\n", removed, prefix, addr)
}

// eachKey SCANs for pattern, calls fn with each page of keys found and
// returns how many there were.
func eachKey(ctx context.Context, rdb *redis.Client, pattern string, fn func([]string) error) (int, error) {
	n := 0
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return n, err
			}
			n += len(keys)
		}
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}
