package sender

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestOffline: failures that reached nobody are told apart from failures
// the other end answered or that broke a connection in use, so only the
// former get the short OfflineRetry cap.
func TestOffline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	_, refused := net.Dial("tcp", addr)
	if refused == nil {
		t.Fatalf("dial %s succeeded after its listener closed", addr)
	}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused", refused, true},
		{"refused, wrapped as the SDK does", fmt.Errorf("kvs: DescribeStream cam: request send failed: %w", refused), true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "kinesisvideo.invalid", IsNotFound: true}, true},
		{"reset while reading", reset, false},
		{"service answered", errors.New("putmedia: HTTP 500 InternalFailure"), false},
		{"refused fragment", fmt.Errorf("ack: %w", errors.New("ERROR 5000")), false},
	} {
		if got := offline(c.err); got != c.want {
			t.Errorf("%s (%v): offline = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
