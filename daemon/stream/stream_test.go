package stream

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/media"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testConfig returns a valid configuration with one file stream replaying
// clip as fast as the stream takes it.
func testConfig(t *testing.T, clip testclips.Clip, loop bool) *config.Config {
	t.Helper()
	c := config.Default()
	c.ThingName, c.Region, c.StateDir = "cam-test", "eu-west-1", t.TempDir()
	c.Credentials.Source = config.CredentialsDefault
	// The replay's wall time must not depend on the test machine's NTP.
	c.ClockSync = config.ClockSyncTrust
	st := config.DefaultStream()
	st.Name, st.Driver, st.Path, st.Realtime, st.Loop, st.FPS = "cam-test", config.DriverFile, clip.Path(), false, loop, clip.FPS
	// Room for everything a looping replay produces before the test
	// cancels it, even on a slow machine: eviction would remove frames
	// the tests count.
	st.RingSize = 256 * config.MiB
	c.Streams = []config.Stream{st}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

// ringContents opens a stream's ring read-only and writes all of it into
// an MKV file; it returns the file and the number of frames in the ring.
func ringContents(t *testing.T, c *config.Config, name string) (string, int) {
	t.Helper()
	r, err := ring.Open(c.RingDir(name), ring.Options{Capacity: int64(c.Streams[0].RingSize), ReadOnly: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := filepath.Join(t.TempDir(), "ring.mkv")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	fw := fragmenter.NewFileWriter(bw)
	if err := r.Range(time.Time{}, time.Time{}, func(_ ring.ID, fr fragmenter.Fragment) error {
		return fw.WriteFragment(&fr)
	}); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out, fw.Frames
}

// waitFor polls cond, a real condition, until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition with a deadline
	}
}

// start runs s until the test ends or stop is called; stop returns Run's
// error and closes the ring.
func start(t *testing.T, s *Stream) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		err := <-done
		return errors.Join(err, s.Close())
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestFileToRing(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	c := testConfig(t, clip, false)
	s, err := New(c, c.Streams[0], Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// A file source that reaches its end stores its last fragment at once.
	runToEnd(t, s)
	out, frames := ringContents(t, c, "cam-test")
	if frames != clip.Decodable {
		t.Fatalf("%d frames in the ring, want %d", frames, clip.Decodable)
	}
	// 2 s fragments (keyframe_interval) of a 5 s clip with an IDR per second.
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: clip.Decodable, Clusters: 3, Source: clip.Path()})
}

// runToEnd runs s until its source (a file without loop) has ended and
// its last fragment is stored, then stops it.
func runToEnd(t *testing.T, s *Stream) {
	t.Helper()
	stop := start(t, s)
	waitFor(t, 30*time.Second, "the source to end", func() bool { return s.Status().State == "source ended" })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// failingCreds counts the calls of a CredentialsFunc that fails its first
// n calls and then returns anonymous credentials.
type failingCreds struct {
	n     int32
	calls atomic.Int32
}

func (f *failingCreds) get() (credentials.Provider, error) {
	if f.calls.Add(1) <= f.n {
		return nil, errors.New("device certificate not found")
	}
	return credentials.ProviderFunc(func(context.Context) (credentials.Credentials, error) {
		return credentials.Credentials{}, nil // anonymous: nothing to sign with
	}), nil
}

// A looping source stopped by cancellation: every frame the source
// delivered is in the ring afterwards, and an uploader that cannot start
// (no credentials yet, then an endpoint where nothing listens) did not
// stop capture.
func TestCancelFlushesEverything(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	c := testConfig(t, clip, true)
	c.KVS.Endpoint = "http://127.0.0.1:1"
	creds := &failingCreds{n: 1}
	s, err := New(c, c.Streams[0], Options{Logger: quiet(), Credentials: creds.get, RestartMin: time.Millisecond, RestartMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	waitFor(t, 30*time.Second, "8 fragments and a second uploader build", func() bool {
		return s.Ring().Stats().Fragments >= 8 && creds.calls.Load() >= 2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if st.FragmentsLost != 0 {
		t.Fatalf("the ring overflowed (%d fragments lost) before the test stopped the replay", st.FragmentsLost)
	}
	fs := s.frag.Stats()
	out, frames := ringContents(t, c, "cam-test")
	if uint64(frames) != st.FramesCaptured || uint64(frames) != fs.Frames || fs.DroppedNoIDR != 0 {
		t.Fatalf("ring holds %d frames; the source delivered %d, the fragmenter wrote %d (dropped %d)",
			frames, st.FramesCaptured, fs.Frames, fs.DroppedNoIDR)
	}
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames})
}

// flakySource fails its first Run and then replays the wrapped source.
type flakySource struct {
	drivers.Source
	runs *atomic.Int32
}

func (f *flakySource) Run(ctx context.Context, out chan<- media.Frame) error {
	if f.runs.Add(1) == 1 {
		return errors.New("device vanished")
	}
	return f.Source.Run(ctx, out)
}

func TestSourceRestartsAfterFailure(t *testing.T) {
	clip := testclips.Get("baseline-360p.h264")
	c := testConfig(t, clip, false)
	const flaky config.Driver = "flaky-test"
	var runs atomic.Int32
	sources := map[config.Driver]SourceFactory{flaky: func(c *config.Config, st config.Stream, log *slog.Logger) (drivers.Source, error) {
		inner, err := newFileSource(c, st, log)
		return &flakySource{Source: inner, runs: &runs}, err
	}}
	st := c.Streams[0]
	st.Driver = flaky
	s, err := New(c, st, Options{Logger: quiet(), Sources: sources, RestartMin: time.Millisecond, RestartMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runToEnd(t, s)
	if runs.Load() != 2 {
		t.Fatalf("source ran %d times, want a restart after the failure", runs.Load())
	}
	if le := s.Status().LastError; le == nil || !strings.Contains(le.Message, "device vanished") {
		t.Fatalf("last error %+v, want the source's failure", le)
	}
	if _, frames := ringContents(t, c, "cam-test"); frames != clip.Decodable {
		t.Fatalf("%d frames after the restart, want %d", frames, clip.Decodable)
	}
}

func TestConfigurationErrors(t *testing.T) {
	clip := testclips.Get("baseline-360p.h264")
	c := testConfig(t, clip, false)
	st := c.Streams[0]
	st.Driver = "carrier-pigeon"
	_, err := New(c, st, Options{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "carrier-pigeon") || !strings.Contains(err.Error(), "exec, file") || !strings.Contains(err.Error(), "v4l2") {
		t.Fatalf("unknown driver: %v", err)
	}
	st = c.Streams[0]
	st.Path = filepath.Join(t.TempDir(), "missing.h264")
	if _, err := New(c, st, Options{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "missing.h264") {
		t.Fatalf("missing file: %v", err)
	}
	// A ring already in use by another stream.
	s, err := New(c, c.Streams[0], Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := New(c, c.Streams[0], Options{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second stream on the same ring: %v", err)
	}
}

// Capture off stores the open fragment and then writes nothing; on
// resumes. Checked while a looping source keeps producing.
func TestSetCapture(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	c := testConfig(t, clip, true)
	c.Streams[0].Realtime = true // a steady flow, so the ring does not fill while the test runs
	s, err := New(c, c.Streams[0], Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	waitFor(t, 30*time.Second, "2 fragments", func() bool { return s.Ring().Stats().Fragments >= 2 })
	s.SetCapture(false)
	waitFor(t, 10*time.Second, "capture to stop", func() bool { return s.Status().State == "capture off" })
	off := s.Status()
	if off.Capture {
		t.Fatal("status says capture is on")
	}
	// Every frame delivered so far is in the ring: the open fragment was
	// stored when capture stopped.
	_, frames := ringContents(t, c, "cam-test")
	if uint64(frames) != off.FramesCaptured {
		t.Fatalf("capture off: ring holds %d frames, the source delivered %d", frames, off.FramesCaptured)
	}
	bytesOff := s.Ring().Stats().BytesWritten
	// Let the source's pace pass several fragment lengths: nothing may be
	// written. The wait is on the fragmenter, not a sleep: a flush is a
	// round trip through the goroutine that would have stored anything.
	for range 3 {
		s.flush()
	}
	if got := s.Ring().Stats().BytesWritten; got != bytesOff {
		t.Fatalf("ring written while capture was off: %d → %d bytes", bytesOff, got)
	}
	s.SetCapture(true)
	waitFor(t, 30*time.Second, "capture to resume", func() bool {
		st := s.Status()
		return st.Capture && st.FragmentsStored >= off.FragmentsStored+2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out, frames := ringContents(t, c, "cam-test")
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames})
}

// Apply sorts changes into live, source restart and stream restart, and
// refuses what check refuses.
func TestApply(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	c := testConfig(t, clip, true)
	c.Streams[0].Realtime = true
	s, err := New(c, c.Streams[0], Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	waitFor(t, 30*time.Second, "a fragment", func() bool { return s.Ring().Stats().Fragments >= 1 })

	effects := func(st config.Stream) map[string]string {
		t.Helper()
		cs, err := s.Apply(st)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		m := map[string]string{}
		for _, ch := range cs {
			m[ch.Key] = ch.Effect
		}
		return m
	}
	st := s.Config()
	st.UploadRateLimit = 100_000
	st.Mode = config.ModeRecord
	if got := effects(st); got["upload_rate_limit"] != EffectLive || got["mode"] != EffectLive || len(got) != 2 {
		t.Fatalf("rate limit and mode: %v", got)
	}
	if s.Config().UploadRateLimit != 100_000 {
		t.Fatal("the new rate limit is not in force")
	}
	// keyframe_interval on a file source changes the fragmenter only.
	st.KeyframeInterval = config.Duration(3 * time.Second)
	if got := effects(st); got["keyframe_interval"] != EffectLive {
		t.Fatalf("keyframe_interval: %v", got)
	}
	// path is a capture setting: the source is rebuilt, capture goes on.
	copyPath := filepath.Join(t.TempDir(), "copy.h264")
	data, err := os.ReadFile(clip.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := s.Status().FramesCaptured
	st.Path = copyPath
	if got := effects(st); got["path"] != EffectSource {
		t.Fatalf("path: %v", got)
	}
	waitFor(t, 30*time.Second, "frames from the new source", func() bool { return s.Status().FramesCaptured > before+uint64(clip.FPS) })
	// ring_size needs the ring reopened: reported, not applied here.
	st2 := st
	st2.RingSize = 128 * config.MiB
	if got := effects(st2); got["ring_size"] != EffectStreamRestart {
		t.Fatalf("ring_size: %v", got)
	}
	if s.Config().RingSize == st2.RingSize {
		t.Fatal("ring_size applied without reopening the ring")
	}
	// Invalid: refused, nothing changed.
	bad := st
	bad.FPS = -1
	bad.UploadRateLimit = 5
	if _, err := s.Apply(bad); err == nil || !strings.Contains(err.Error(), "fps") {
		t.Fatalf("invalid fps accepted: %v", err)
	}
	if s.Config().UploadRateLimit != 100_000 {
		t.Fatal("a refused table changed the running stream")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out, frames := ringContents(t, c, "cam-test")
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames})
}

func TestSenderConfig(t *testing.T) {
	c := config.Default()
	c.ThingName, c.Region = "cam-9", "eu-central-1"
	c.KVS = config.KVS{Endpoint: "http://127.0.0.1:1", CreateStream: true, Retention: config.Duration(48 * time.Hour)}
	st := config.Stream{Name: "cam-9", Mode: config.ModeRecord, UploadRateLimit: 1000}
	got := SenderConfig(&c, st)
	if got.Stream != "cam-9" || got.Region != "eu-central-1" || got.ControlEndpoint != "http://127.0.0.1:1" ||
		!got.CreateStream || got.Retention != 48*time.Hour || got.RateLimit != 1000 || got.Mode != sender.ModeRecord {
		t.Errorf("SenderConfig = %+v", got)
	}
}
