package netfault_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/netfault"
)

// The test binary doubles as the client that runs inside a namespace:
// with NETFAULT_CLIENT=addr it connects, sends NETFAULT_BYTES bytes,
// reads until the server closes, and prints what happened as JSON.
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETFAULT_CLIENT"); addr != "" {
		os.Exit(client(addr))
	}
	os.Exit(m.Run())
}

type clientResult struct {
	Sent int64
	Err  string
}

func client(addr string) int {
	n, _ := strconv.ParseInt(os.Getenv("NETFAULT_BYTES"), 10, 64)
	var res clientResult
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err == nil {
		res.Sent, err = io.CopyN(c, zeros{}, n)
		if err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
			_, err = io.Copy(io.Discard, c)
		}
		c.Close()
	}
	if err != nil {
		res.Err = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func runClient(t *testing.T, l *netfault.Link, addr string, n int64) clientResult {
	t.Helper()
	cmd := l.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETFAULT_CLIENT="+addr, "NETFAULT_BYTES="+strconv.FormatInt(n, 10))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client in %s: %v", l.NS, err)
	}
	var res clientResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	return res
}

// sink accepts connections on the host side and counts what arrives,
// sending a byte every 100 ms meanwhile as a PutMedia endpoint sends its
// acknowledgements; results carry the byte count and read error of each
// connection.
type sinkResult struct {
	n   int64
	err error
	d   time.Duration
}

func sink(t *testing.T, ip string) (net.Listener, chan sinkResult) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	res := make(chan sinkResult, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				start := time.Now()
				stop := make(chan struct{})
				go func() {
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							return
						case <-t.C:
							if _, err := c.Write([]byte{'.'}); err != nil {
								return
							}
						}
					}
				}()
				n, err := io.Copy(io.Discard, c)
				close(stop)
				c.Close()
				res <- sinkResult{n, err, time.Since(start)}
			}()
		}
	}()
	return ln, res
}

func TestRateLimit(t *testing.T) {
	l := netfault.New(t, "rate", 201)
	ln, res := sink(t, l.HostIP)
	const rate, size = 4_000_000, 1_000_000
	if err := l.SetRate(rate); err != nil {
		t.Fatal(err)
	}
	if r := runClient(t, l, ln.Addr().String(), size); r.Err != "" || r.Sent != size {
		t.Fatalf("client: %+v", r)
	}
	got := <-res
	// The bucket's burst lets a little through at once; the rest cannot
	// arrive faster than the rate.
	if min := time.Duration(float64(size*8) / rate * 0.8 * float64(time.Second)); got.n != size || got.d < min {
		t.Fatalf("%d bytes in %v through a %d bit/s link, want %d in at least %v", got.n, got.d, rate, size, min)
	}
	if err := l.SetRate(0); err != nil {
		t.Fatal(err)
	}
}

func TestBlackHoleCountsSYNs(t *testing.T) {
	l := netfault.New(t, "hole", 202)
	ln, _ := sink(t, l.HostIP)
	before, err := l.SYNs()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.BlackHole(true); err != nil {
		t.Fatal(err)
	}
	r := runClient(t, l, ln.Addr().String(), 10)
	if !strings.Contains(r.Err, "timeout") {
		t.Fatalf("connect through a black hole: %+v, want a time-out (no RST)", r)
	}
	after, err := l.SYNs()
	if err != nil || after <= before {
		t.Fatalf("SYNs %d -> %d (%v)", before, after, err)
	}
	if err := l.Clear(); err != nil {
		t.Fatal(err)
	}
	if r := runClient(t, l, ln.Addr().String(), 10); r.Err != "" {
		t.Fatalf("after Clear: %+v", r)
	}
}

func TestResetAfter(t *testing.T) {
	l := netfault.New(t, "reset", 203)
	ln, res := sink(t, l.HostIP)
	port := ln.Addr().(*net.TCPAddr).Port
	if err := l.ResetAfter(port, 200_000); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r := runClient(t, l, ln.Addr().String(), 5_000_000)
	t.Logf("client %v", time.Since(t0))
	if !strings.Contains(r.Err, "reset") || r.Sent >= 5_000_000 {
		t.Fatalf("client: %+v, want a reset before the end", r)
	}
	got := <-res
	t.Logf("server %v %v", time.Since(t0), got)
	if got.err == nil || got.n > 1_000_000 {
		t.Fatalf("server side: %d bytes, err %v; want the reset seen there too", got.n, got.err)
	}
	if err := l.ResetAfter(port, 0); err != nil {
		t.Fatal(err)
	}
	if r := runClient(t, l, ln.Addr().String(), 1_000_000); r.Err != "" {
		t.Fatalf("after removing the rule: %+v", r)
	}
}

func TestLinkDown(t *testing.T) {
	l := netfault.New(t, "down", 204)
	ln, _ := sink(t, l.HostIP)
	if err := l.SetUp(false); err != nil {
		t.Fatal(err)
	}
	if r := runClient(t, l, ln.Addr().String(), 10); !strings.Contains(r.Err, "unreachable") {
		t.Fatalf("with the link down: %+v", r)
	}
	if err := l.SetUp(true); err != nil {
		t.Fatal(err)
	}
	if r := runClient(t, l, ln.Addr().String(), 10); r.Err != "" {
		t.Fatalf("link up again: %+v", r)
	}
}

// The proxy delays each direction and keeps the bytes in order,
// half-close included.
func TestProxyDelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(c, c) // echo until the client half-closes
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	p, err := netfault.StartProxy("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const delay = 100 * time.Millisecond
	p.SetDelay(delay, 20*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var want bytes.Buffer
	start := time.Now()
	for i := range 200 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if _, err := c.Write(want.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("echo through the proxy: %d bytes, err %v", len(got), err)
	}
	if rtt := time.Since(start); rtt < 2*(delay-20*time.Millisecond) {
		t.Fatalf("round trip %v, want at least two one-way delays of %v±20ms", rtt, delay)
	}
}
