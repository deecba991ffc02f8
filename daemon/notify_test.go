package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// notifySocket listens where NOTIFY_SOCKET points for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "400000") // a ping every 200 ms
	t.Setenv("WATCHDOG_PID", "")
	return conn
}

// nextNotify returns the next datagram, failing the test after 10 s.
func nextNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// runWithContext runs a command line in-process with ctx.
func runWithContext(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = dispatch(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// startRun runs `kvscamd run` in-process on a file stream (streamKeys
// added to its table) uploading to a local KVS endpoint. stop cancels it;
// done delivers its exit status.
func startRun(t *testing.T, streamKeys string) (stop func(), done <-chan int) {
	t.Helper()
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, streamKeys)
	sock := filepath.Join(t.TempDir(), "kvscamd.sock")
	ctx, cancel := context.WithCancel(t.Context())
	codes := make(chan int, 1)
	go func() {
		code, _, _ := runWithContext(ctx, "run", "-config", path, "-socket", sock)
		codes <- code
	}()
	return cancel, codes
}

func TestRunNotifiesReadyWatchdogStopping(t *testing.T) {
	conn := notifySocket(t)
	stop, done := startRun(t, "realtime = true\nloop = true\n")

	first := nextNotify(t, conn)
	if !strings.Contains(first, "READY=1") || !strings.Contains(first, "STATUS=cam-1:") {
		t.Fatalf("first notification %q, want READY=1 with a STATUS", first)
	}
	for pings := 0; pings < 3; {
		if strings.Contains(nextNotify(t, conn), "WATCHDOG=1") {
			pings++
		}
	}
	stop()
	for {
		if m := nextNotify(t, conn); strings.Contains(m, "STOPPING=1") {
			break
		}
	}
	if code := <-done; code != exitOK {
		t.Fatalf("run exited %d", code)
	}
}

// TestWatchdogStopsWithoutProgress replays a short file once: when capture
// has ended and everything is uploaded, nothing moves, and the watchdog
// pings must stop so the service manager can step in.
func TestWatchdogStopsWithoutProgress(t *testing.T) {
	conn := notifySocket(t)
	stop, done := startRun(t, "realtime = false\n")
	defer stop()
	// Wait for three status updates in a row without a ping: the 120
	// frames are captured at once and uploaded within a few periods.
	quiet := 0
	for n := 0; quiet < 3; n++ {
		if n > 200 {
			t.Fatal("the watchdog kept being pinged with nothing moving")
		}
		m := nextNotify(t, conn)
		switch {
		case strings.Contains(m, "WATCHDOG=1"):
			quiet = 0
		case strings.Contains(m, "STATUS="):
			quiet++
		}
	}
	stop()
	if code := <-done; code != exitOK {
		t.Fatalf("run exited %d", code)
	}
}
