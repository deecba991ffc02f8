package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// captureOffWindow is how long the daemon is watched with capture off.
// Nothing it does then (upload retries, status, watchdog) may write to
// disk, however long it is watched; a few seconds cover several upload
// retries.
const captureOffWindow = 3 * time.Second

// TestCaptureOffWritesNothing runs the real binary capturing a clip in
// real time, turns capture off over the status socket and checks that,
// once the last fragment is stored, the process sends no byte to the
// block layer (/proc/<pid>/io write_bytes) and changes no file in the
// state directory: an SD card is not worn while the camera is off.
func TestCaptureOffWritesNothing(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "kvscamd.toml")
	socket := filepath.Join(dir, "kvscamd.sock")
	// Uploads go where nothing listens: they keep failing and retrying,
	// which must not write either.
	body := fmt.Sprintf(`thing_name = "cam-off"
region = "eu-west-1"
state_dir = %q
clock_sync = "trust"
[credentials]
source = "static"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
[kvs]
endpoint = "http://127.0.0.1:1"
[[stream]]
name = "cam-off"
driver = "file"
path = %q
realtime = true
loop = true
fps = %d
ring_size = "16MiB"
`, state, clip.Path(), clip.FPS)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "-config", cfg, "-socket", socket)
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := status.NewClient(socket)
	stream := func() status.Stream {
		t.Helper()
		st, err := client.Status(ctx)
		if err != nil || len(st.Streams) != 1 {
			return status.Stream{}
		}
		return st.Streams[0]
	}
	waitUntil := func(what string, cond func(status.Stream) bool) status.Stream {
		t.Helper()
		for {
			if s := stream(); cond(s) {
				return s
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: not within the deadline; stderr:\n%s", what, stderr.String())
			}
			time.Sleep(50 * time.Millisecond) // polling a real condition with a deadline
		}
	}

	waitUntil("two fragments stored", func(s status.Stream) bool { return s.FragmentsStored >= 2 })
	// The counter must see writes on this filesystem, or zero below
	// would prove nothing.
	if w := writeBytes(t, cmd.Process.Pid); w == 0 {
		t.Fatalf("write_bytes is 0 after storing fragments: the test directory (%s) is on a filesystem without block-layer accounting such as tmpfs; set TMPDIR to a disk-backed directory", dir)
	}
	off := false
	if _, err := client.Do(ctx, status.Command{Op: status.OpCapture, Stream: "cam-off", On: &off}); err != nil {
		t.Fatal(err)
	}
	// Settled: the source is down and the last fragment's store is done,
	// which the stored count holding still over several polls shows.
	last := waitUntil("capture off", func(s status.Stream) bool { return s.State == "capture off" })
	for stable := 0; stable < 4; {
		time.Sleep(100 * time.Millisecond) // polling a real condition with a deadline
		s := stream()
		if s.FragmentsStored == last.FragmentsStored {
			stable++
		} else {
			stable, last = 0, s
		}
		if ctx.Err() != nil {
			t.Fatal("stored count never settled after capture off")
		}
	}
	w0, snap0 := writeBytes(t, cmd.Process.Pid), stateSnapshot(t, state)
	// An observation window, not a synchronisation: the claim is that
	// nothing at all is written during it.
	time.Sleep(captureOffWindow)
	w1, snap1 := writeBytes(t, cmd.Process.Pid), stateSnapshot(t, state)
	if w1 != w0 {
		t.Errorf("capture off: the daemon wrote %d bytes to the block layer in %v", w1-w0, captureOffWindow)
	}
	if snap0 != snap1 {
		t.Errorf("capture off: state files changed:\nbefore:\n%s\nafter:\n%s", snap0, snap1)
	}
	if s := stream(); s.FramesCaptured != last.FramesCaptured || s.FragmentsStored != last.FragmentsStored {
		t.Errorf("capture off: frames %d -> %d, fragments %d -> %d", last.FramesCaptured, s.FramesCaptured, last.FragmentsStored, s.FragmentsStored)
	}

	// Capture comes back and the daemon stops cleanly.
	on := true
	if _, err := client.Do(ctx, status.Command{Op: status.OpCapture, Stream: "cam-off", On: &on}); err != nil {
		t.Fatal(err)
	}
	waitUntil("capture on again", func(s status.Stream) bool { return s.FragmentsStored > last.FragmentsStored })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
}

// writeBytes reads write_bytes of /proc/<pid>/io.
func writeBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/io: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("/proc/%d/io has no write_bytes", pid)
	return 0
}

// stateSnapshot lists every file under dir with its size and mtime.
func stateSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
