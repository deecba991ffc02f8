package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/stream"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// unsyncedRun is the real binary capturing a realtime file stream while
// its clock counts as unsynchronised until syncFile exists (the
// clock.TestSyncFileEnv hook), uploading to a kvslocal server.
type unsyncedRun struct {
	t        *testing.T
	cfg      string
	state    string
	syncFile string
	env      []string
	srv      *kvslocal.Server
}

func newUnsyncedRun(t *testing.T) *unsyncedRun {
	t.Helper()
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	dir := t.TempDir()
	u := &unsyncedRun{t: t, cfg: filepath.Join(dir, "kvscamd.toml"), state: filepath.Join(dir, "state"),
		syncFile: filepath.Join(dir, "synchronized"), srv: srv}
	writeControlConfig(t, u.cfg, u.state, aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
		srv.URL, "", fmt.Sprintf(`
[[stream]]
name = "cam-1"
driver = "file"
path = %q
fps = 30
realtime = true
loop = true
keyframe_interval = "1s"
ring_size = "64MiB"
`, testclips.Get("high-aud.h264").Path()))
	u.env = append(os.Environ(), asKvscamd+"=1", clock.TestSyncFileEnv+"="+u.syncFile)
	return u
}

// start runs the binary; the returned function stops it with SIGTERM and
// returns its stderr, failing the test unless it exits 0.
func (u *unsyncedRun) start(extraEnv ...string) (stop func() string) {
	t := u.t
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "-config", u.cfg, "-socket", filepath.Join(t.TempDir(), "kvscamd.sock"))
	cmd.Env = append(append([]string{}, u.env...), extraEnv...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return func() string {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err = <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Signal(syscall.SIGQUIT) // its goroutines go to stderr
			<-exited
			t.Fatalf("run did not stop within 20 s of SIGTERM; stderr:\n%s", stderr.String())
		}
		if err != nil {
			t.Fatalf("run after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
		return stderr.String()
	}
}

func (u *unsyncedRun) ringDir() string { return filepath.Join(u.state, "cam-1") }

// waitRing waits up to 20 s for the ring to satisfy ok.
func (u *unsyncedRun) waitRing(what string, ok func(ring.Stats) bool) ring.Stats {
	t := u.t
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := ringStats(t, u.ringDir())
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring: %s not reached within 20 s (%+v, %v)", what, st, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a real condition with a deadline
	}
}

// stored reads every fragment of the ring.
func (u *unsyncedRun) stored() []fragmenter.Fragment {
	t := u.t
	t.Helper()
	r, err := ring.Open(u.ringDir(), ring.Options{Capacity: 64 << 20, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []fragmenter.Fragment
	if err := r.Range(time.Time{}, time.Time{}, func(_ ring.ID, f fragmenter.Fragment) error {
		f.Header, f.Cluster = nil, nil
		out = append(out, f)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

var stoppedRE = regexp.MustCompile(`msg="stream stopped" stream=cam-1 frames=(\d+) fragments=(\d+) dropped_frames=0 append_errors=0`)

// stopReport returns the frames and fragments a run reported at its stop.
func stopReport(t *testing.T, stderr string) (frames, fragments int) {
	t.Helper()
	m := stoppedRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no clean stop report in stderr:\n%s", stderr)
	}
	frames, _ = strconv.Atoi(m[1])
	fragments, _ = strconv.Atoi(m[2])
	return frames, fragments
}

// watchdogPings drains conn (a full datagram socket would block the
// daemon's notifications) for the rest of the test and counts the
// WATCHDOG=1 messages.
func watchdogPings(t *testing.T, conn *net.UnixConn) *atomic.Int64 {
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return // closed at cleanup
			}
			if bytes.Contains(buf[:k], []byte("WATCHDOG=1")) {
				n.Add(1)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return &n
}

// TestRunUnsyncedClock is the end-to-end case of a camera booting without
// a synchronised clock: the real binary stores fragments at once (with
// monotonic times), keeps the watchdog fed, loses nothing at SIGTERM, and
// once the clock is synchronised, in a later run of the same boot, the
// fragments of both runs upload with their true wall times.
func TestRunUnsyncedClock(t *testing.T) {
	conn := notifySocket(t)
	u := newUnsyncedRun(t)
	pings := watchdogPings(t, conn)
	t0 := time.Now()
	stop := u.start()
	u.waitRing("3 fragments while unsynchronised", func(st ring.Stats) bool { return st.Fragments >= 3 })
	if got := time.Since(t0); got > 10*time.Second {
		t.Errorf("3 one-second fragments took %v to reach the ring", got)
	}
	tStop := time.Now()
	stderr := stop()
	if n := pings.Load(); n < 3 {
		t.Errorf("%d watchdog pings while capturing without a synchronised clock, want a steady stream", n)
	}
	frames, fragments := stopReport(t, stderr)
	first := u.stored()
	sum := 0
	for i, f := range first {
		if !f.WallUnknown || f.Timecode >= time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() {
			t.Fatalf("fragment %d stored as %+v, want wall time unknown with a monotonic timecode", i, f)
		}
		sum += f.Frames
	}
	if len(first) != fragments || sum != frames {
		t.Fatalf("ring holds %d fragments with %d frames; the run reported %d with %d", len(first), sum, fragments, frames)
	}
	if n := len(u.srv.Fragments("cam-1")); n != 0 {
		t.Fatalf("%d fragments uploaded with an unsynchronised clock", n)
	}

	// The same boot, still unsynchronised at first; then NTP syncs.
	stop = u.start()
	u.waitRing("a fragment of the second run", func(st ring.Stats) bool { return st.Fragments > len(first) })
	if n := len(u.srv.Fragments("cam-1")); n != 0 {
		t.Fatalf("%d fragments uploaded before sync", n)
	}
	if err := os.WriteFile(u.syncFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := u.srv.WaitFragments(ctx, "cam-1", len(first)+3)
	if err != nil {
		t.Fatalf("after sync: %d fragments uploaded: %v", len(got), err)
	}
	stderr = stop()
	for i := 1; i < len(got); i++ {
		if got[i].Timecode <= got[i-1].Timecode {
			t.Fatalf("uploaded fragment %d at %d, not after %d", i, got[i].Timecode, got[i-1].Timecode)
		}
	}
	// The first run's fragments come first, at the wall time they were
	// captured: within the first run, give or take the capture latency.
	lo, hi := t0.Add(-time.Second).UnixMilli(), tStop.Add(time.Second).UnixMilli()
	for i := range first {
		if got[i].Timecode < lo || got[i].Timecode > hi || got[i].Frames != first[i].Frames {
			t.Fatalf("uploaded fragment %d: %s with %d frames; stored with %d frames, captured between %s and %s",
				i, time.UnixMilli(got[i].Timecode).UTC().Format(time.RFC3339Nano), got[i].Frames, first[i].Frames,
				t0.UTC().Format(time.RFC3339Nano), tStop.UTC().Format(time.RFC3339Nano))
		}
	}
	if !strings.Contains(stderr, "placed on it and uploaded") {
		t.Errorf("the release of stored fragments was not logged:\n%s", stderr)
	}
}

// TestRunUnsyncedEarlierBoot stores fragments without a synchronised
// clock, "reboots" (another boot id, through the test hook) and runs with
// a synchronised clock: the earlier boot's fragments are reported, never
// uploaded, kept in the ring, and export -unsynced writes them out.
func TestRunUnsyncedEarlierBoot(t *testing.T) {
	watchdogPings(t, notifySocket(t))
	u := newUnsyncedRun(t)
	stop := u.start(stream.TestBootIDEnv + "=11111111-2222-3333-4444-555555555555")
	u.waitRing("2 fragments while unsynchronised", func(st ring.Stats) bool { return st.Fragments >= 2 })
	frames, fragments := stopReport(t, stop())

	if err := os.WriteFile(u.syncFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	stop = u.start(stream.TestBootIDEnv + "=66666666-7777-8888-9999-000000000000")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := u.srv.WaitFragments(ctx, "cam-1", 3)
	if err != nil {
		t.Fatalf("after reboot with a synchronised clock: %d fragments uploaded: %v", len(got), err)
	}
	stderr := stop()
	for i, f := range got {
		if f.Timecode < t1.Add(-time.Second).UnixMilli() {
			t.Fatalf("uploaded fragment %d at %s, before this boot's run started at %s: an earlier boot's fragment went out with a guessed time",
				i, time.UnixMilli(f.Timecode).UTC().Format(time.RFC3339Nano), t1.UTC().Format(time.RFC3339Nano))
		}
	}
	if !strings.Contains(stderr, "fragments of an earlier boot") || !strings.Contains(stderr, "boot=11111111-2222-3333-4444-555555555555") {
		t.Errorf("the earlier boot's fragments were not reported:\n%s", stderr)
	}
	kept := 0
	for _, f := range u.stored() {
		if f.WallUnknown {
			kept++
		}
	}
	if kept != fragments {
		t.Fatalf("%d fragments without wall time in the ring, the first run stored %d", kept, fragments)
	}

	out := filepath.Join(t.TempDir(), "unsynced.mkv")
	code, stdout, errOut := runCLI(t, "export", "-config", u.cfg, "-stream", "cam-1", "-unsynced", "-o", out)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d frames in %d fragments stored without wall time, from 1 boots", frames, fragments)) {
		t.Fatalf("export -unsynced: exit %d, stdout %q, stderr %q; the first run stored %d frames in %d fragments", code, stdout, errOut, frames, fragments)
	}
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames})
	code, stdout, _ = runCLI(t, "export", "-config", u.cfg, "-stream", "cam-1", "-o", filepath.Join(t.TempDir(), "wall.mkv"))
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d fragments without wall time left out", fragments)) {
		t.Fatalf("export: exit %d, stdout %q", code, stdout)
	}
}
