// Package faultproxy is a TCP proxy for tests that inject network faults
// between a client and a server: it can pass traffic, hang (accept and
// read, but forward nothing, like a server that stopped answering), or
// reset (drop every connection, like a partition or a crash).
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
)

// Mode is what the proxy does with traffic.
type Mode int

const (
	// Pass forwards traffic both ways.
	Pass Mode = iota
	// Hang keeps connections open and accepts new ones, but forwards
	// nothing in either direction until the mode changes.
	Hang
	// Reset closes every connection and closes new ones at once.
	Reset
)

// Proxy forwards connections from its address to a target.
type Proxy struct {
	ln       net.Listener
	target   string
	received atomic.Int64

	mu     sync.Mutex
	cond   *sync.Cond
	mode   Mode
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Received returns how many bytes clients have sent to the proxy.
func (p *Proxy) Received() int64 { return p.received.Load() }

// SetMode switches what the proxy does.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	if m == Reset {
		for c := range p.conns {
			_ = c.Close()
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == Reset {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.copy(server, client, true); done <- struct{}{} }()
	go func() { p.copy(client, server, false); done <- struct{}{} }()
	<-done
	// One direction ended: end the other.
	_ = client.Close()
	_ = server.Close()
	<-done
}

// copy forwards src to dst, holding each chunk while the proxy hangs.
func (p *Proxy) copy(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient {
				p.received.Add(int64(n))
			}
			if !p.waitPass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitPass blocks while the proxy hangs; it reports whether to forward.
func (p *Proxy) waitPass() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == Hang && !p.closed {
		p.cond.Wait()
	}
	return !p.closed && p.mode == Pass
}
