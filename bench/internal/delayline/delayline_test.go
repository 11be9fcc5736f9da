package delayline_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tieredcache/tieredcache/bench/internal/delayline"
	"github.com/tieredcache/tieredcache/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// echoServer answers every connection by writing back what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

func start(t *testing.T, target string, delay time.Duration) *delayline.Line {
	t.Helper()
	l, err := delayline.Start(target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestBytesIntactAndInOrder sends numbered frames of random sizes over
// several connections at once, many in flight on each (the writer does not
// wait for replies), and checks that the echo brings every byte back
// unchanged and in order.
func TestBytesIntactAndInOrder(t *testing.T) {
	l := start(t, echoServer(t), 200*time.Microsecond)
	const conns, frames = 8, 500
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Go(func() {
			conn, err := net.Dial("tcp", l.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			var sent bytes.Buffer
			for i := range frames {
				payload := make([]byte, 1+r.IntN(3000))
				for j := range payload {
					payload[j] = byte(r.Uint32())
				}
				sent.Write(binary.BigEndian.AppendUint32(nil, uint32(i)))
				sent.Write(binary.BigEndian.AppendUint32(nil, uint32(len(payload))))
				sent.Write(payload)
			}
			want := sent.Bytes()
			writeErr := make(chan error, 1)
			go func() {
				// Small writes, so that many chunks are in flight.
				for rest := want; len(rest) > 0; {
					n := min(len(rest), 1+r.IntN(5000))
					if _, err := conn.Write(rest[:n]); err != nil {
						writeErr <- err
						return
					}
					rest = rest[n:]
				}
				writeErr <- nil
			}()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(bufio.NewReader(conn), got); err != nil {
				errs <- fmt.Errorf("conn %d: %w", c, err)
				return
			}
			if err := <-writeErr; err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && got[i] == want[i] {
					i++
				}
				errs <- fmt.Errorf("conn %d: bytes differ from offset %d of %d", c, i, len(want))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDelaysEachWay checks that a round trip takes at least twice the
// delay (a lower bound only: how much longer depends on the machine).
func TestDelaysEachWay(t *testing.T) {
	const delay = 2 * time.Millisecond
	l := start(t, echoServer(t), delay)
	conn, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 4)
	for range 5 {
		t0 := time.Now()
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(t0); rtt < 2*delay {
			t.Fatalf("round trip %v, want at least %v", rtt, 2*delay)
		}
	}
}

// TestEndOfStream checks that a client's close reaches the server and the
// server's close reaches the client, and that Close ends every connection.
func TestEndOfStream(t *testing.T) {
	l := start(t, echoServer(t), 100*time.Microsecond)
	conn, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The echo server sees the end, closes, and that end comes back.
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v; want \"bye\", EOF", got, err)
	}

	conn2, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := conn2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn2, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn2.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection outlived Close")
	}
	if _, err := net.Dial("tcp", l.Addr()); err == nil {
		t.Fatal("the line still accepts after Close")
	}
}

func TestNegativeDelay(t *testing.T) {
	if _, err := delayline.Start("127.0.0.1:1", -time.Millisecond); err == nil {
		t.Fatal("a negative delay was accepted")
	}
}

// TestAddedRTT measures what the line adds to a Redis PING at the default
// delay (0.25 ms each way): the median should be about 0.5 ms. It logs the
// figures and asserts nothing about them, since a loaded machine may
// stretch any of them; BenchmarkPing reports the same as metrics.
func TestAddedRTT(t *testing.T) {
	direct, line, added := pingRTTs(t, 300)
	t.Logf("PING round trip over %d pings: direct p50 %v p90 %v; through the line (%v each way) p50 %v p90 %v; added p50 %v",
		len(direct), percentile(direct, 0.5), percentile(direct, 0.9), delayline.DefaultDelay,
		percentile(line, 0.5), percentile(line, 0.9), added)
}

// BenchmarkPing reports the PING round trip directly and through the line
// at the default delay, and the median the line adds (added-p50-us).
func BenchmarkPing(b *testing.B) {
	direct, line, added := pingRTTs(b, b.N)
	b.ReportMetric(us(percentile(direct, 0.5)), "direct-p50-us")
	b.ReportMetric(us(percentile(line, 0.5)), "line-p50-us")
	b.ReportMetric(us(percentile(line, 0.99)), "line-p99-us")
	b.ReportMetric(us(added), "added-p50-us")
}

// pingRTTs times n PINGs directly and n through a line at the default
// delay, alternating, and returns both samples and the difference of
// their medians.
func pingRTTs(tb testing.TB, n int) (direct, line []time.Duration, added time.Duration) {
	tb.Helper()
	srv := redistest.Shared(tb)
	l, err := delayline.Start(srv.Addr, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	o := srv.Options()
	rd := redis.NewClient(o)
	tb.Cleanup(func() { _ = rd.Close() })
	o2 := srv.Options()
	o2.Addr = l.Addr()
	rl := redis.NewClient(o2)
	tb.Cleanup(func() { _ = rl.Close() })
	ctx := context.Background()
	timed := func(c *redis.Client) time.Duration {
		t := time.Now()
		if err := c.Ping(ctx).Err(); err != nil && !errors.Is(err, context.Canceled) {
			tb.Fatal(err)
		}
		return time.Since(t)
	}
	timed(rd) // dial outside the samples
	timed(rl)
	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
	}
	for range n {
		direct = append(direct, timed(rd))
		line = append(line, timed(rl))
	}
	return direct, line, percentile(line, 0.5) - percentile(direct, 0.5)
}

func percentile(s []time.Duration, q float64) time.Duration {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
