// Package delayline is a TCP proxy that adds a fixed one-way delay to
// every byte it forwards, in both directions, so that benchmarks on
// loopback see the round trips of a real network (about 0.5 ms in one
// zone).
//
// Bytes read at time t are written at t+delay: round trips are not
// serialised, many requests may be in flight on one connection, and the
// order of the bytes of each direction is kept. Each direction of each
// connection has a reader goroutine that stamps what it reads with its due
// time and appends it to one queue shared by the whole line. Since the
// delay is the same for all, that queue is in due order, and one
// dispatcher goroutine writes each chunk when it falls due.
//
// One dispatcher, not one timer per connection, because Go's timers
// round a sub-millisecond sleep up to about a millisecond on Linux: the
// dispatcher sleeps with nanosleep(2) until shortly before the head of the
// queue is due and yields in a loop for the rest, so that only one
// goroutine of the process ever waits that way. A receiver that stops
// reading stalls the whole line; Redis and its clients read all the time.
package delayline

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// DefaultDelay is the one-way delay of a same-zone network: about 0.5 ms
// per round trip.
const DefaultDelay = 250 * time.Microsecond

// spinWindow is how long before a chunk's due time the dispatcher stops
// sleeping and starts yielding: nanosleep overshoots by the timer slack
// (50 µs by default) plus the wake-up.
const spinWindow = 100 * time.Microsecond

// chunkSize is the largest read; one read of a burst of pipelined
// commands becomes one chunk.
const chunkSize = 32 << 10

// Line forwards connections from its address to a target, each byte
// delayed by the same one-way delay.
type Line struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	queue  []chunk // in due order; queue[head:] pending
	head   int
	wake   chan struct{} // the dispatcher waits on it while the queue is empty
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// chunk is bytes read from one side, to be written to dst at due; a nil
// data is the end of the stream.
type chunk struct {
	dst  *pipe
	data []byte
	due  time.Time
}

// pipe is one direction of one proxied connection.
type pipe struct {
	dst    net.Conn
	failed bool // a write failed: drop the rest (dispatcher only)
	pair   *pair
}

// pair is the two connections of one proxied connection, closed when both
// directions ended.
type pair struct {
	client, server net.Conn
	mu             sync.Mutex
	ended          int
}

var bufs = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// Start listens on a free loopback port and forwards to target with delay
// added each way (DefaultDelay when delay is 0).
func Start(target string, delay time.Duration) (*Line, error) {
	if delay < 0 {
		return nil, errors.New("delayline: negative delay")
	}
	if delay == 0 {
		delay = DefaultDelay
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Line{ln: ln, target: target, delay: delay, wake: make(chan struct{}, 1),
		conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	l.wg.Add(2)
	go l.accept()
	go l.dispatch()
	return l, nil
}

// Addr returns the address clients should dial.
func (l *Line) Addr() string { return l.ln.Addr().String() }

// Delay returns the one-way delay.
func (l *Line) Delay() time.Duration { return l.delay }

// Close stops the line, closes every connection and waits for its
// goroutines.
func (l *Line) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

func (l *Line) accept() {
	defer l.wg.Done()
	for {
		client, err := l.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", l.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		for _, c := range []net.Conn{client, server} {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
		}
		if !l.track(client, server) {
			return
		}
		p := &pair{client: client, server: server}
		l.wg.Add(2)
		go l.read(client, &pipe{dst: server, pair: p})
		go l.read(server, &pipe{dst: client, pair: p})
	}
}

// track registers the connections for Close, or closes them if the line
// is closed.
func (l *Line) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		l.conns[c] = struct{}{}
	}
	return true
}

// read queues what src sends for p, stamped with its due time, until src
// ends; then it queues the end of the stream.
func (l *Line) read(src net.Conn, p *pipe) {
	defer l.wg.Done()
	for {
		bp := bufs.Get().(*[]byte)
		n, err := src.Read(*bp)
		due := time.Now().Add(l.delay)
		if n > 0 {
			l.push(chunk{dst: p, data: (*bp)[:n], due: due})
		} else {
			bufs.Put(bp)
		}
		if err != nil {
			l.push(chunk{dst: p, due: due})
			return
		}
	}
}

func (l *Line) push(c chunk) {
	l.mu.Lock()
	l.queue = append(l.queue, c)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next returns the head of the queue without removing it.
func (l *Line) next() (chunk, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.head == len(l.queue) {
		// Empty: reuse the backing array.
		l.queue, l.head = l.queue[:0], 0
		return chunk{}, false
	}
	return l.queue[l.head], true
}

func (l *Line) pop() {
	l.mu.Lock()
	l.queue[l.head] = chunk{}
	l.head++
	l.mu.Unlock()
}

// dispatch writes each chunk when it falls due.
func (l *Line) dispatch() {
	defer l.wg.Done()
	for {
		c, ok := l.next()
		if !ok {
			select {
			case <-l.wake:
				continue
			case <-l.done:
				return
			}
		}
		WaitUntil(c.due)
		l.pop()
		l.deliver(c)
		select {
		case <-l.done:
			return
		default:
		}
	}
}

// deliver writes c to its destination, or ends the destination's stream.
func (l *Line) deliver(c chunk) {
	p := c.dst
	if c.data == nil {
		// The source ended: pass the end on, and close the pair once both
		// directions ended.
		if tc, ok := p.dst.(*net.TCPConn); ok && !p.failed {
			_ = tc.CloseWrite()
		} else {
			_ = p.dst.Close()
		}
		p.pair.end(l)
		return
	}
	if !p.failed {
		if _, err := p.dst.Write(c.data); err != nil {
			// The destination is gone: end both sides so that the reader
			// of this direction's source stops too.
			p.failed = true
			_ = p.pair.client.Close()
			_ = p.pair.server.Close()
		}
	}
	data := c.data[:cap(c.data)]
	bufs.Put(&data)
}

func (p *pair) end(l *Line) {
	p.mu.Lock()
	p.ended++
	both := p.ended == 2
	p.mu.Unlock()
	if !both {
		return
	}
	_ = p.client.Close()
	_ = p.server.Close()
	l.mu.Lock()
	delete(l.conns, p.client)
	delete(l.conns, p.server)
	l.mu.Unlock()
}

// WaitUntil returns at t, give or take a few microseconds, without the
// millisecond rounding of Go's timers: it sleeps with nanosleep(2) until
// spinWindow before t, then yields until t.
func WaitUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		if d > 2*time.Millisecond {
			// Far enough for Go's own timer, which does not hold a thread.
			time.Sleep(d - 2*time.Millisecond)
			continue
		}
		if d > spinWindow {
			ts := syscall.NsecToTimespec(int64(d - spinWindow))
			_ = syscall.Nanosleep(&ts, nil)
			continue
		}
		runtime.Gosched()
	}
}
