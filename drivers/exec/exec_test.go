package exec

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/media"
)

// logBuf collects log output from several goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func testLogger(t *testing.T) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func needFFmpeg(t *testing.T) string {
	t.Helper()
	p, err := osexec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: apt-get install ffmpeg")
	}
	return p
}

// encoderArgs is an ffmpeg command writing n frames of H.264 (GOP 30, no
// B-frames) to stdout.
func encoderArgs(ffmpeg string, n int, realtime bool) []string {
	args := []string{ffmpeg, "-nostdin", "-v", "error"}
	if realtime {
		args = append(args, "-re")
	}
	return append(args, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-frames:v", itoa(n), "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-bf", "0",
		"-flush_packets", "1", "-f", "h264", "-")
}

func itoa(n int) string { return fmtInt(n) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// receive reads n frames or fails at the deadline.
func receive(t *testing.T, out <-chan media.Frame, n int, within time.Duration) []media.Frame {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	var got []media.Frame
	for len(got) < n {
		select {
		case f := <-out:
			got = append(got, f)
		case <-deadline.C:
			t.Fatalf("received %d of %d frames within %v", len(got), n, within)
		}
	}
	return got
}

// startRun runs src in the background; stop cancels it and returns Run's
// error.
func startRun(t *testing.T, src drivers.Source, out chan media.Frame) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30 s of cancellation")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestRestartsExitedEncoder(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	const perRun = 45
	args := encoderArgs(ffmpeg, perRun, false)
	// Reference: the same encoder run once, into a file.
	ref, err := osexec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("reference encode: %v", err)
	}
	var want [][][]byte
	rd := h264.NewReader(bytes.NewReader(ref))
	for {
		au, err := rd.Next()
		if err != nil {
			break
		}
		want = append(want, au)
	}
	if len(want) != perRun {
		t.Fatalf("reference has %d access units, want %d", len(want), perRun)
	}

	log, logs := testLogger(t)
	shell := "echo hello-from-encoder >&2; exec " + strings.Join(args, " ")
	src, err := New(Config{
		Command: []string{"sh", "-c", shell}, Clock: clock.System{Mode: clock.SyncTrust},
		Log: log, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, 256)
	stop := startRun(t, src, out)
	got := receive(t, out, 2*perRun, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	var last time.Time
	for i, f := range got {
		if f.Seq != uint64(i) {
			t.Fatalf("frame %d has seq %d", i, f.Seq)
		}
		if wantKey := i%perRun%30 == 0; f.Key != wantKey {
			t.Errorf("frame %d: key %v, want %v", i, f.Key, wantKey)
		}
		if !f.Time.After(last) {
			t.Fatalf("frame %d: time %v not after %v", i, f.Time, last)
		}
		last = f.Time
		w := want[i%perRun]
		if len(w) != len(f.NALUs) {
			t.Fatalf("frame %d: %d NAL units, want %d", i, len(f.NALUs), len(w))
		}
		for j := range w {
			if !bytes.Equal(w[j], f.NALUs[j]) {
				t.Fatalf("frame %d NAL %d differs from the reference encode", i, j)
			}
		}
	}
	if st := src.Stats(); st.Errors < 1 || st.Frames < 2*perRun || st.Dropped != 0 {
		t.Fatalf("stats %+v: want at least one restart counted, %d frames, no drops", st, 2*perRun)
	}
	for _, want := range []string{"hello-from-encoder", "encoder exited; restarting", "encoder started"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestLiveEncoderTimestamps(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	src, err := New(Config{Command: encoderArgs(ffmpeg, 30, true), Clock: clock.System{Mode: clock.SyncTrust}})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, 64)
	startRun(t, src, out)
	got := receive(t, out, 30, 30*time.Second)
	now := time.Now()
	for i, f := range got {
		if i > 0 && !f.Time.After(got[i-1].Time) {
			t.Fatalf("frame %d not after frame %d", i, i-1)
		}
		if d := now.Sub(f.Time); d < -50*time.Millisecond || d > 10*time.Second {
			t.Fatalf("frame %d stamped %v, now %v", i, f.Time, now)
		}
	}
	// -re paces 30 frames over about one second.
	if span := got[29].Time.Sub(got[0].Time); span < 500*time.Millisecond || span > 3*time.Second {
		t.Fatalf("30 frames at 30 fps span %v", span)
	}
}

// unsyncedClock has the real monotonic clock and a wall clock that is
// wrong (1970) until sync is set; waits are real ones.
type unsyncedClock struct {
	clock.System
	synced atomic.Bool
}

func (c *unsyncedClock) Mono() time.Duration { return clock.System{}.Mono() }
func (c *unsyncedClock) Synced() bool        { return c.synced.Load() }
func (c *unsyncedClock) Now() time.Time {
	if c.synced.Load() {
		return time.Now()
	}
	return time.Unix(0, int64(clock.System{}.Mono()))
}

// TestUnsyncedFramesFlowAtOnce checks that an unsynchronised clock holds
// nothing back: frames arrive at once with their monotonic instants and no
// wall time, and after sync (from the next key frame) with wall time.
func TestUnsyncedFramesFlowAtOnce(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	clk := &unsyncedClock{}
	s, err := newSource(Config{Command: encoderArgs(ffmpeg, 150, true), Clock: clk, MinBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, 64)
	startRun(t, s, out)
	got := receive(t, out, 30, 10*time.Second)
	for i, f := range got {
		if !f.Time.IsZero() || f.Mono <= 0 || (i > 0 && f.Mono <= got[i-1].Mono) {
			t.Fatalf("unsynchronised frame %d: time %v, mono %v", i, f.Time, f.Mono)
		}
	}
	clk.synced.Store(true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		f := receive(t, out, 1, 10*time.Second)[0]
		if !f.Time.IsZero() {
			if !f.Key {
				t.Fatal("wall time began on a frame that is not a key frame")
			}
			if d := time.Since(f.Time); d < -50*time.Millisecond || d > 5*time.Second {
				t.Fatalf("first synchronised frame stamped %v, now %v", f.Time, time.Now())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no frame with wall time after sync")
		}
	}
}

func TestStopKillsEncoderIgnoringSIGTERM(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	log, logs := testLogger(t)
	src, err := New(Config{
		Command:   []string{"sh", "-c", `trap "" TERM; echo $$ > ` + pidFile + `; exec sleep 1000`},
		Clock:     clock.System{Mode: clock.SyncTrust},
		Log:       log,
		StopGrace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, src, make(chan media.Frame, 1))
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(pidFile)
		if s := strings.TrimSpace(string(b)); s != "" {
			for _, c := range s {
				pid = pid*10 + int(c-'0')
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child never started")
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("child %d still exists after Run returned (kill 0: %v)", pid, err)
	}
	if !strings.Contains(logs.String(), "ignored SIGTERM") {
		t.Errorf("escalation to SIGKILL not logged:\n%s", logs.String())
	}
}

func TestCommandNotFound(t *testing.T) {
	src, err := New(Config{Command: []string{"no-such-encoder-xyz"}})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Run(context.Background(), make(chan media.Frame))
	if err == nil || !strings.Contains(err.Error(), "no-such-encoder-xyz") {
		t.Fatalf("Run = %v, want an error naming the command", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty command accepted")
	}
}

func TestNotAnnexBIsReported(t *testing.T) {
	log, logs := testLogger(t)
	s, err := newSource(Config{
		Command: []string{"sh", "-c", `yes hello | head -c 100000`},
		Clock:   clock.System{Mode: clock.SyncTrust}, Log: log, MinBackoff: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, s, make(chan media.Frame, 1))
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Errors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("child exit not counted")
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition
	}
	if !strings.Contains(logs.String(), "not H.264 Annex-B") {
		t.Fatalf("no hint about the output format:\n%s", logs.String())
	}
}
