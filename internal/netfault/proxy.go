package netfault

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// proxyQueue bounds the chunks in flight per direction; a full queue
// stops reading, so a slow reader pushes back on the sender as a long
// link would.
const proxyQueue = 256

// Proxy is a TCP forwarder that delays every chunk it reads by a delay
// plus or minus a jitter, keeping the byte order, in both directions. Its
// goroutines (two per direction of a connection plus the accept loop) end
// with Close.
type Proxy struct {
	// Addr is where it listens.
	Addr   string
	ln     net.Listener
	target string

	mu            sync.Mutex
	delay, jitter time.Duration
	conns         map[net.Conn]struct{}
	closed        bool
	wg            sync.WaitGroup
}

// StartProxy listens on listen (host:port, port 0 picks one) and forwards
// each connection to target.
func StartProxy(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetDelay sets the one-way delay and its jitter (uniform within
// ±jitter) for chunks read from now on.
func (p *Proxy) SetDelay(delay, jitter time.Duration) {
	p.mu.Lock()
	p.delay, p.jitter = delay, jitter
	p.mu.Unlock()
}

func (p *Proxy) nextDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.delay
	if p.jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*p.jitter))) - p.jitter
	}
	return max(d, 0)
}

// Close stops listening and drops every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
			if err != nil || !p.track(up) {
				_ = c.Close()
				return
			}
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(up, c) }()
			go func() { defer wg.Done(); p.pipe(c, up) }()
			wg.Wait()
			_ = c.Close()
			_ = up.Close()
		}()
	}
}

type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst through a delay line. When src ends, dst's write
// side is closed after the last chunk, so half-closes pass through.
func (p *Proxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, proxyQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch := range q {
			if wait := time.Until(ch.due); wait > 0 {
				time.Sleep(wait) // the delay line itself, not synchronisation
			}
			if _, err := dst.Write(ch.b); err != nil {
				_ = src.Close()
				for range q { // let the reader finish
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	var last time.Time
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now().Add(p.nextDelay())
			if due.Before(last) {
				due = last // never reorder
			}
			last = due
			q <- chunk{buf[:n], due}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = dst.Close()
			}
			break
		}
	}
	close(q)
	<-done
}
