package sdnotify

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestNotifyNeverReadDoesNotHang: a receiver that never reads fills its
// queue; sends must then fail with a deadline rather than block the daemon
// (they did, and SIGTERM hung behind them).
func TestNotifyNeverReadDoesNotHang(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := FromEnv()
	if !n.Enabled() {
		t.Fatal("NOTIFY_SOCKET set but the notifier is disabled")
	}
	for i := 0; i < 100000; i++ {
		err := n.Notify(Watchdog, Status("a status line long enough to fill a queue in a few hundred sends"))
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("send %d: %v, want a deadline error", i, err)
		}
		return
	}
	t.Fatal("100000 notifications queued on a socket nobody reads; the queue should have filled")
}
