package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/service"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// controlConfig is a daemon with static credentials for kvs and the
// given [[stream]] tables.
func controlConfig(t *testing.T, kvs *kvslocal.Server, streams string) (path, state string) {
	t.Helper()
	c := kvs.IssueCredentials(time.Hour)
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	path = filepath.Join(dir, "kvscamd.toml")
	writeControlConfig(t, path, state, c, kvs.URL, "", streams)
	return path, state
}

// writeControlConfig writes the file; top holds extra top-level keys
// (region defaults to us-west-2).
func writeControlConfig(t *testing.T, path, state string, c aws.Credentials, url, top, streams string) {
	t.Helper()
	if !strings.Contains(top, "region") {
		top += "\nregion = \"us-west-2\""
	}
	body := fmt.Sprintf(`thing_name = "cam-1"
state_dir = %q
clock_sync = "trust"
%s

[credentials]
source = "static"
access_key_id = %q
secret_access_key = %q
session_token = %q

[kvs]
endpoint = %q
%s`, state, top, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, url, streams)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fileStream is a [[stream]] table replaying clip in real time, for ever.
func fileStream(name string, clip testclips.Clip, ringSize, extra string) string {
	return fmt.Sprintf(`
[[stream]]
name = %q
driver = "file"
path = %q
loop = true
realtime = true
fps = %d
keyframe_interval = "1s"
ring_size = %q
%s`, name, clip.Path(), clip.FPS, ringSize, extra)
}

// pollStatus asks the daemon's socket until cond holds for its status.
func pollStatus(t *testing.T, c *status.Client, limit time.Duration, what string, cond func(status.Status) bool) status.Status {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st, err := c.Status(context.Background())
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v (last error %v); status: %+v", what, limit, err, st)
		}
		time.Sleep(20 * time.Millisecond) // polling a real condition with a deadline
	}
}

func streamOf(st status.Status, name string) status.Stream {
	for _, s := range st.Streams {
		if s.Name == name {
			return s
		}
	}
	return status.Stream{}
}

// persisted returns the timecodes of the fragments kvs persisted on name.
func persisted(kvs *kvslocal.Server, name string) []int64 {
	var tcs []int64
	_ = kvs.Wait(context.Background(), name, func(st kvslocal.State) bool {
		for _, f := range st.Fragments {
			if f.Persisted {
				tcs = append(tcs, f.Timecode)
			}
		}
		return true
	})
	slices.Sort(tcs)
	return tcs
}

// ringEntries lists the timecode and duration of every fragment in a
// ring, opened read-only beside its writer.
func ringEntries(t *testing.T, dir string) []fragmenter.Fragment {
	t.Helper()
	r, err := ring.Open(dir, ring.Options{Capacity: 64 << 20, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []fragmenter.Fragment
	if err := r.Range(time.Time{}, time.Time{}, func(_ ring.ID, f fragmenter.Fragment) error {
		out = append(out, fragmenter.Fragment{Timecode: f.Timecode, Duration: f.Duration, Frames: f.Frames})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDaemonControl runs a daemon with two streams side by side, a file
// stream uploading live and an exec stream in record mode, and drives it
// through its socket the way an operator would: status as video flows,
// an upload of a time range in record mode, capture off and on.
func TestDaemonControl(t *testing.T) {
	ffmpeg := mkvcheck.Tool(t, "ffmpeg")
	kvs := kvslocal.Start(t, kvslocal.Options{})
	for _, name := range []string{"cam-a", "cam-b"} {
		if _, err := kvs.CreateStream(name, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	clip := testclips.Get("high-aud.h264")
	encoder := fmt.Sprintf(`command = [%q, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
  "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-x264-params", "aud=1", "-f", "h264", "-"]`, ffmpeg)
	cfg, state := controlConfig(t, kvs, fileStream("cam-a", clip, "64MiB", "")+`
[[stream]]
name = "cam-b"
driver = "exec"
mode = "record"
keyframe_interval = "1s"
ring_size = "64MiB"
`+encoder+"\n")

	var wraps atomic.Int32
	sock := filepath.Join(t.TempDir(), "kvscamd.sock")
	opts := service.Options{Socket: sock, WrapCredentials: func(p credentials.Provider) credentials.Provider {
		wraps.Add(1)
		return p
	}}
	var runErr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() { exit <- report(&runErr, "run", runDaemon(ctx, cfg, &runErr, opts)) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run stderr:\n%s", runErr.String())
		}
	})
	cl := status.NewClient(sock)

	// Status changes as video flows, for both streams.
	first := pollStatus(t, cl, 30*time.Second, "both streams capturing", func(st status.Status) bool {
		return len(st.Streams) == 2 && streamOf(st, "cam-a").FragmentsStored >= 1 && streamOf(st, "cam-b").FragmentsStored >= 1
	})
	later := pollStatus(t, cl, 30*time.Second, "uploads on cam-a and 4 fragments on cam-b", func(st status.Status) bool {
		a, b := streamOf(st, "cam-a"), streamOf(st, "cam-b")
		return a.FragmentsAcked >= 2 && b.FragmentsStored >= 4 && a.FPS > 0 && b.FPS > 0
	})
	for _, name := range []string{"cam-a", "cam-b"} {
		f, l := streamOf(first, name), streamOf(later, name)
		if l.FramesCaptured <= f.FramesCaptured || !l.NewestStored.After(f.NewestStored) || l.RingBytesUsed == 0 || l.RingBytesCapacity != 64<<20 || !l.Capture {
			t.Errorf("%s: status did not follow the video: first %+v, later %+v", name, f, l)
		}
	}
	if a := streamOf(later, "cam-a"); a.Mode != "live" || a.NewestAcked.IsZero() || a.Uploader.Connections == 0 {
		t.Errorf("cam-a uploader status: %+v", a)
	}
	if b := streamOf(later, "cam-b"); b.FragmentsAcked != 0 || b.FragmentsUnacked < 4 || b.OldestUnacked.IsZero() {
		t.Errorf("cam-b in record mode: %+v", b)
	}
	if later.Creds.Source != "static" || later.Creds.State != "ok" || !later.Clock.Synchronized || later.Uptime <= first.Uptime {
		t.Errorf("daemon status: %+v", later)
	}
	if n := wraps.Load(); n != 1 {
		t.Errorf("credentials provider built %d times, want one for both streams", n)
	}
	if got := persisted(kvs, "cam-b"); len(got) != 0 {
		t.Fatalf("record mode uploaded %d fragments before anyone asked", len(got))
	}

	// The table for a person and the JSON for scripts.
	code, out, errOut := runCLI(t, "status", "-socket", sock)
	if code != exitOK || !strings.Contains(out, "STREAM") || !strings.Contains(out, "cam-a") || !strings.Contains(out, "cam-b") ||
		!strings.Contains(out, "/ 64 MiB") || !strings.Contains(out, "credentials:  static, ok") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "status", "-json", "-socket", sock)
	var js status.Status
	if err := json.Unmarshal([]byte(out), &js); code != exitOK || err != nil || len(js.Streams) != 2 {
		t.Fatalf("status -json: exit %d, %v\n%s", code, err, out)
	}
	if strings.Contains(out, kvs.Credentials().SecretAccessKey) {
		t.Fatal("status -json shows a secret")
	}

	// Upload exactly two recorded fragments of cam-b.
	frags := ringEntries(t, filepath.Join(state, "cam-b"))
	if len(frags) < 4 {
		t.Fatalf("%d fragments in cam-b's ring", len(frags))
	}
	from := time.UnixMilli(frags[1].Timecode)
	to := time.UnixMilli(frags[2].Timecode + 1)
	want := []int64{frags[1].Timecode, frags[2].Timecode}
	code, out, errOut = runCLI(t, "upload", "-socket", sock, "-stream", "cam-b",
		"-from", from.UTC().Format(time.RFC3339Nano), "-to", to.UTC().Format(time.RFC3339Nano))
	if code != exitOK || !strings.Contains(out, "2 fragments queued") {
		t.Fatalf("upload: exit %d\n%s%s", code, out, errOut)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := kvs.Wait(wctx, "cam-b", func(st kvslocal.State) bool {
		n := 0
		for _, f := range st.Fragments {
			if f.Persisted {
				n++
			}
		}
		return n >= 2
	}); err != nil {
		t.Fatalf("the requested fragments did not arrive: %v", err)
	}
	// Let cam-a persist two more fragments: time for any extra upload.
	base := len(persisted(kvs, "cam-a"))
	if err := kvs.Wait(wctx, "cam-a", func(st kvslocal.State) bool { return len(st.Fragments) >= base+2 }); err != nil {
		t.Fatal(err)
	}
	if got := persisted(kvs, "cam-b"); !slices.Equal(got, want) {
		t.Fatalf("record-mode upload sent timecodes %v, want exactly %v", got, want)
	}

	// Capture off on cam-a: nothing more is stored; cam-b goes on.
	code, out, errOut = runCLI(t, "capture", "-socket", sock, "-stream", "cam-a", "off")
	if code != exitOK || !strings.Contains(out, "capture off") {
		t.Fatalf("capture off: exit %d\n%s%s", code, out, errOut)
	}
	off := pollStatus(t, cl, 10*time.Second, "cam-a capture off", func(st status.Status) bool {
		return streamOf(st, "cam-a").State == "capture off"
	})
	pollStatus(t, cl, 30*time.Second, "two more fragments on cam-b", func(st status.Status) bool {
		return streamOf(st, "cam-b").FragmentsStored >= streamOf(off, "cam-b").FragmentsStored+2
	})
	if st, _ := cl.Status(ctx); streamOf(st, "cam-a").FragmentsStored != streamOf(off, "cam-a").FragmentsStored || streamOf(st, "cam-a").Capture {
		t.Fatalf("cam-a stored fragments with capture off: %+v then %+v", streamOf(off, "cam-a"), streamOf(st, "cam-a"))
	}
	code, _, errOut = runCLI(t, "capture", "-socket", sock, "-stream", "cam-a", "on")
	if code != exitOK {
		t.Fatalf("capture on: exit %d: %s", code, errOut)
	}
	pollStatus(t, cl, 30*time.Second, "cam-a capturing again", func(st status.Status) bool {
		a := streamOf(st, "cam-a")
		return a.Capture && a.FragmentsStored >= streamOf(off, "cam-a").FragmentsStored+2
	})

	// Refused commands say what is wrong and change nothing.
	code, _, errOut = runCLI(t, "upload", "-socket", sock, "-stream", "cam-z")
	if code != exitFailure || !strings.Contains(errOut, `no stream "cam-z"`) || !strings.Contains(errOut, "cam-a") {
		t.Fatalf("upload to an unknown stream: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "capture", "-socket", sock, "-stream", "cam-a", "maybe")
	if code != exitUsage || !strings.Contains(errOut, "on or off") {
		t.Fatalf("capture maybe: exit %d: %s", code, errOut)
	}

	cancel()
	if code := <-exit; code != exitOK {
		t.Fatalf("run exited %d", code)
	}
	// The daemon removed its socket; the CLI says it is not running.
	code, _, errOut = runCLI(t, "status", "-socket", sock)
	if code != exitFailure || !strings.Contains(errOut, "kvscamd is not running") {
		t.Fatalf("status without a daemon: exit %d: %s", code, errOut)
	}
}

// TestSIGHUPReload runs the real binary and changes its file under it:
// a live change is applied without a restart, an invalid file is refused
// while uploads go on, and changes that need a restart say so.
func TestSIGHUPReload(t *testing.T) {
	kvs := kvslocal.Start(t, kvslocal.Options{})
	if _, err := kvs.CreateStream("cam-1", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	clip := testclips.Get("high-aud.h264")
	creds := kvs.IssueCredentials(time.Hour)
	cfg, state := controlConfig(t, kvs, "")
	rewrite := func(ringSize, streamExtra, top string) {
		writeControlConfig(t, cfg, state, creds, kvs.URL, top, fileStream("cam-1", clip, ringSize, streamExtra))
	}
	rewrite("64MiB", "", "")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "kvscamd.sock")
	cmd := exec.Command(exe, "run", "-config", cfg, "-socket", sock)
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run stderr:\n%s", stderr.String())
		}
	})
	cl := status.NewClient(sock)
	acked := func(st status.Status) uint64 { return streamOf(st, "cam-1").FragmentsAcked }
	st := pollStatus(t, cl, 30*time.Second, "uploads", func(st status.Status) bool { return acked(st) >= 1 })
	started := st.Started

	hup := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(what string, parts ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, line := range strings.Split(stderr.String(), "\n") {
				ok := true
				for _, p := range parts {
					ok = ok && strings.Contains(line, p)
				}
				if ok {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no log line for %s (%q)", what, parts)
			}
			time.Sleep(20 * time.Millisecond) // polling a real condition with a deadline
		}
	}

	// A live change.
	rewrite("64MiB", `upload_rate_limit = "300KB/s"`, "")
	hup()
	waitLog("the live rate change", `msg="setting changed"`, "key=upload_rate_limit", "effect=live")
	st = pollStatus(t, cl, 20*time.Second, "the new rate limit in status", func(st status.Status) bool {
		return streamOf(st, "cam-1").Uploader.RateLimit == 300_000
	})
	if !st.Started.Equal(started) || cmd.ProcessState != nil {
		t.Fatal("the daemon restarted for a live change")
	}

	// An invalid file: refused with its problems, the old one runs on.
	rewrite("64MiB", `width = -3`, "")
	hup()
	waitLog("the refusal", "new configuration refused", "width")
	before := acked(st)
	pollStatus(t, cl, 30*time.Second, "uploads after the refusal", func(st status.Status) bool { return acked(st) >= before+2 })

	// ring_size restarts the stream; region needs a daemon restart and
	// keeps its old value (uploads still signed for the old region).
	rewrite("32MiB", `upload_rate_limit = "300KB/s"`, `region = "eu-west-1"`)
	hup()
	waitLog("the stream restart", `msg="setting changed"`, "key=ring_size", `effect="stream restarted"`)
	waitLog("the region", `msg="setting changed"`, "key=region", `effect="needs a daemon restart"`)
	st = pollStatus(t, cl, 30*time.Second, "the smaller ring", func(st status.Status) bool {
		return streamOf(st, "cam-1").RingBytesCapacity == 32<<20
	})
	before = acked(st) // the counter starts again with the new stream
	pollStatus(t, cl, 30*time.Second, "uploads after the restart", func(st status.Status) bool { return acked(st) >= before+2 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	if strings.Contains(stderr.String(), creds.SecretAccessKey) {
		t.Fatal("a secret reached the log")
	}
}
