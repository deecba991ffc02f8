package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/heartbeat"
	"github.com/kvscamd/kvscamd/daemon/service"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/daemon/stream"
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
// added to its table) uploading to a local KVS endpoint, with its status
// socket at sock. stop cancels it; done delivers its exit status.
func startRun(t *testing.T, streamKeys string) (sock string, stop func(), done <-chan int) {
	t.Helper()
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, streamKeys)
	sock = filepath.Join(t.TempDir(), "kvscamd.sock")
	ctx, cancel := context.WithCancel(t.Context())
	codes := make(chan int, 1)
	go func() {
		code, _, _ := runWithContext(ctx, "run", "-config", path, "-socket", sock)
		codes <- code
	}()
	return sock, cancel, codes
}

func TestRunNotifiesReadyWatchdogStopping(t *testing.T) {
	conn := notifySocket(t)
	sock, stop, done := startRun(t, "realtime = true\nloop = true\n")

	first := nextNotify(t, conn)
	if !strings.Contains(first, "READY=1") || !strings.Contains(first, "STATUS=cam-1:") {
		t.Fatalf("first notification %q, want READY=1 with a STATUS", first)
	}
	// READY means `kvscamd status` works: the socket answers at once.
	if _, err := status.NewClient(sock).Status(t.Context()); err != nil {
		t.Fatalf("status right after READY=1: %v", err)
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

// TestWatchdogPingsWithoutFramesOrNetwork replays a short file once to an
// endpoint nobody listens on: capture ends, nothing is uploaded, nothing
// moves. Every loop is alive though, so the pings must go on, with the
// problem told in STATUS.
func TestWatchdogPingsWithoutFramesOrNetwork(t *testing.T) {
	conn := notifySocket(t)
	path := checkConfig(t, "http://127.0.0.1:1", "AKIDEXAMPLE", "secret", "", "realtime = false\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, path, io.Discard, service.Options{Socket: filepath.Join(t.TempDir(), "s.sock")})
	}()
	// Ten pings in a row whose STATUS says nothing moves: about 1 s at
	// the test's 400 ms watchdog.
	quietPings := 0
	for n := 0; quietPings < 10; n++ {
		if n > 200 {
			t.Fatal("no run of pings while nothing moves")
		}
		m := nextNotify(t, conn)
		if !strings.Contains(m, "STATUS=") {
			continue
		}
		switch {
		case strings.Contains(m, "STUCK"):
			t.Fatalf("a stage reported stuck with only the network down: %q", m)
		case strings.Contains(m, "no progress") && strings.Contains(m, "WATCHDOG=1"):
			quietPings++
		case strings.Contains(m, "no progress"):
			t.Fatalf("no ping while only the data flow stopped: %q", m)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestWatchdogStopsWhenStageStalls hangs the fragmenter loop of a running
// daemon with the test hook: the pings must stop and STATUS must name the
// stage; once the loop runs again, so do the pings.
func TestWatchdogStopsWhenStageStalls(t *testing.T) {
	conn := notifySocket(t)
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "realtime = true\nloop = true\n")
	hb := heartbeat.New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, path, io.Discard, service.Options{
			Socket: filepath.Join(t.TempDir(), "s.sock"),
			Stream: stream.Options{Heartbeat: hb},
		})
	}()
	waitPings := func(n int) {
		for pings := 0; pings < n; {
			if strings.Contains(nextNotify(t, conn), "WATCHDOG=1") {
				pings++
			}
		}
	}
	waitPings(3)
	<-hb.ArmStall("cam-1/fragmenter")
	// Within half the timeout plus one period the stage counts as stuck;
	// from the first STUCK status on, no ping may come.
	for n := 0; ; n++ {
		if n > 50 {
			t.Fatal("no STUCK status after the stall")
		}
		m := nextNotify(t, conn)
		if strings.Contains(m, "STUCK cam-1/fragmenter") {
			if strings.Contains(m, "WATCHDOG=1") {
				t.Fatalf("ping together with STUCK: %q", m)
			}
			break
		}
	}
	for i := 0; i < 5; i++ {
		if m := nextNotify(t, conn); strings.Contains(m, "WATCHDOG=1") || !strings.Contains(m, "STUCK") {
			t.Fatalf("notification %q while the fragmenter is stalled", m)
		}
	}
	hb.ReleaseStall()
	waitPings(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
