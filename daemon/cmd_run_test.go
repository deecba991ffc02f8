package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// writeRunConfig writes a configuration with one file stream "cam-test"
// replaying clip as fast as the pipeline takes it, and returns its path
// and the state directory. Uploads go to a port where nothing listens:
// capture must not depend on them.
func writeRunConfig(t *testing.T, clip testclips.Clip, loop bool, extra string) (cfg, state string) {
	t.Helper()
	dir := t.TempDir()
	state = filepath.Join(dir, "state")
	cfg = filepath.Join(dir, "kvscamd.toml")
	body := fmt.Sprintf(`thing_name = "cam-test"
region = "eu-west-1"
state_dir = %q
clock_sync = "trust" # replay on the wall clock whatever the machine's NTP says
[credentials]
source = "static"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
[kvs]
endpoint = "http://127.0.0.1:1"
[[stream]]
name = "cam-test"
driver = "file"
path = %q
realtime = false
loop = %v
fps = %d
ring_size = "256MiB" # room for all a fast looping replay makes before the test stops it
%s`, state, clip.Path(), loop, clip.FPS, extra)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, state
}

// ringStats reads a ring's stats without disturbing a writer.
func ringStats(t *testing.T, dir string) (ring.Stats, error) {
	t.Helper()
	r, err := ring.Open(dir, ring.Options{Capacity: 256 << 20, ReadOnly: true})
	if err != nil {
		return ring.Stats{}, err
	}
	defer r.Close()
	return r.Stats(), nil
}

// TestRunSIGTERM runs the real binary on a looping clip while uploads
// fail, stops it with SIGTERM while it captures, and checks that every
// frame it captured is in the ring and exports as a valid MKV.
func TestRunSIGTERM(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	cfg, state := writeRunConfig(t, clip, true, "")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "-config", cfg, "-socket", filepath.Join(t.TempDir(), "kvscamd.sock"))
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := ringStats(t, filepath.Join(state, "cam-test")); err == nil && st.Fragments >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run stored no fragments within 30 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition with a deadline
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`msg="stream stopped" stream=cam-test frames=(\d+) fragments=(\d+) dropped_frames=0 append_errors=0`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no clean stop report in stderr:\n%s", stderr.String())
	}
	frames, _ := strconv.Atoi(m[1])
	out := filepath.Join(t.TempDir(), "all.mkv")
	code, stdout, errOut := runCLI(t, "export", "-config", cfg, "-stream", "cam-test", "-o", out)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%d frames in %s fragments", frames, m[2])) {
		t.Fatalf("export: exit %d, stdout %q, stderr %q; the run captured %d frames in %s fragments", code, stdout, errOut, frames, m[2])
	}
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames})
}

func TestRunConfigErrors(t *testing.T) {
	code, _, errOut := runCLI(t, "run", "-config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != exitFailure || !strings.Contains(errOut, "missing.toml") {
		t.Fatalf("missing config: exit %d, stderr %q", code, errOut)
	}
	cfg, _ := writeRunConfig(t, testclips.Get("high-aud.h264"), false, "")
	os.WriteFile(cfg, bytes.Replace(mustRead(t, cfg), []byte("high-aud.h264"), []byte("nothing-here.h264"), 1), 0o600)
	code, _, errOut = runCLI(t, "run", "-config", cfg)
	if code != exitFailure || !strings.Contains(errOut, "nothing-here.h264") {
		t.Fatalf("missing clip: exit %d, stderr %q", code, errOut)
	}
}

// runUntil runs `kvscamd run` in this process until the ring of stream
// cam-test satisfies done, then cancels it (as SIGTERM does) and returns
// its stderr.
func runUntil(t *testing.T, cfg, state string, done func(ring.Stats) bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- dispatch(ctx, []string{"run", "-config", cfg, "-socket", filepath.Join(t.TempDir(), "kvscamd.sock")}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := ringStats(t, filepath.Join(state, "cam-test")); err == nil && done(st) {
			break
		}
		select {
		case code := <-exit:
			t.Fatalf("run ended early with exit %d; stderr:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring not as expected within 30 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition with a deadline
	}
	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("run: exit %d; stderr:\n%s", code, stderr.String())
	}
	return stderr.String()
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
