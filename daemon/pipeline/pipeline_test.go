package pipeline

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

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/media"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testConfig returns a valid configuration with one file stream replaying
// clip as fast as the pipeline takes it.
func testConfig(t *testing.T, clip testclips.Clip, loop bool) *config.Config {
	t.Helper()
	c := config.Default()
	c.ThingName, c.Region, c.StateDir = "cam-test", "eu-west-1", t.TempDir()
	c.Credentials.Source = config.CredentialsDefault
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
func ringContents(t *testing.T, c *config.Config, stream string) (string, int) {
	t.Helper()
	dir, err := RingDir(c, stream)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.Open(dir, ring.Options{Capacity: int64(c.Streams[0].RingSize), ReadOnly: true, Logger: quiet()})
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

func TestFileToRing(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	c := testConfig(t, clip, false)
	p, err := New(c, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// Without an uploader, a file source that reaches its end ends the run.
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, frames := ringContents(t, c, "cam-test")
	if frames != clip.Decodable {
		t.Fatalf("%d frames in the ring, want %d", frames, clip.Decodable)
	}
	// 2 s fragments (keyframe_interval) of a 5 s clip with an IDR per second.
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: clip.Decodable, Clusters: 3, Source: clip.Path()})
}

// stubUploader stands in for the sender: it fails its first runs, then
// waits for cancellation.
type stubUploader struct {
	failures int
	runs     atomic.Int32
	ring     *ring.Ring
}

func (u *stubUploader) Run(ctx context.Context) error {
	if int(u.runs.Add(1)) <= u.failures {
		return errors.New("upload failed")
	}
	<-ctx.Done()
	return nil
}

// A looping source stopped by cancellation: every frame the source
// delivered is in the ring afterwards, and an uploader that keeps failing
// did not stop capture.
func TestCancelFlushesEverything(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	c := testConfig(t, clip, true)
	up := &stubUploader{failures: 1}
	p, err := New(c, Options{Logger: quiet(), Uploader: func(_ *config.Config, _ *config.Stream, r *ring.Ring, _ *slog.Logger) (Uploader, error) {
		up.ring = r
		return up, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Streams()[0]
	if up.ring != s.Ring {
		t.Fatal("uploader was not given the stream's ring")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for s.Ring.Stats().Fragments < 8 || up.runs.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %d fragments, %d uploader runs", s.Ring.Stats().Fragments, up.runs.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Ring.Stats(); st.Lost != 0 || st.EvictedAcked != 0 {
		t.Fatalf("the ring overflowed (%d fragments lost) before the test stopped the replay", st.Lost)
	}
	delivered := int(s.Source.Stats().Frames)
	fs := s.frag.Stats()
	out, frames := ringContents(t, c, "cam-test")
	if frames != delivered || uint64(frames) != fs.Frames || fs.DroppedNoIDR != 0 {
		t.Fatalf("ring holds %d frames; the source delivered %d, the fragmenter wrote %d (dropped %d)",
			frames, delivered, fs.Frames, fs.DroppedNoIDR)
	}
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames})
}

// flakySource fails its first Run and then replays the wrapped source.
type flakySource struct {
	drivers.Source
	runs atomic.Int32
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
	var src *flakySource
	RegisterDriver(flaky, func(c *config.Config, st *config.Stream, log *slog.Logger) (drivers.Source, error) {
		inner, err := newFileSource(c, st, log)
		src = &flakySource{Source: inner}
		return src, err
	})
	t.Cleanup(func() {
		factoriesMu.Lock()
		delete(factories, flaky)
		factoriesMu.Unlock()
	})
	c.Streams[0].Driver = flaky
	p, err := New(c, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if src.runs.Load() != 2 {
		t.Fatalf("source ran %d times, want a restart after the failure", src.runs.Load())
	}
	if _, frames := ringContents(t, c, "cam-test"); frames != clip.Decodable {
		t.Fatalf("%d frames after the restart, want %d", frames, clip.Decodable)
	}
}

func TestConfigurationErrors(t *testing.T) {
	clip := testclips.Get("baseline-360p.h264")
	c := testConfig(t, clip, false)
	c.Streams[0].Driver = "carrier-pigeon"
	_, err := New(c, Options{Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "carrier-pigeon") || !strings.Contains(err.Error(), "exec, file") || !strings.Contains(err.Error(), "v4l2") {
		t.Fatalf("unknown driver: %v", err)
	}
	c = testConfig(t, clip, false)
	c.Streams[0].Path = filepath.Join(t.TempDir(), "missing.h264")
	if _, err := New(c, Options{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "missing.h264") {
		t.Fatalf("missing file: %v", err)
	}
	for _, bad := range []string{"..", ".", "a/b", ""} {
		if _, err := RingDir(c, bad); err == nil {
			t.Errorf("RingDir accepted stream name %q", bad)
		}
	}
	// A ring already in use by another pipeline.
	c = testConfig(t, clip, false)
	p, err := New(c, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := New(c, Options{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second pipeline on the same state_dir: %v", err)
	}
}

// An uploader that cannot be built at first (credentials not provisioned
// yet) neither stops the pipeline from starting nor capture; it is built
// later.
func TestUploaderBuiltLate(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	c := testConfig(t, clip, false)
	up := &stubUploader{}
	var builds atomic.Int32
	p, err := New(c, Options{Logger: quiet(), Uploader: func(_ *config.Config, _ *config.Stream, r *ring.Ring, _ *slog.Logger) (Uploader, error) {
		if builds.Add(1) == 1 {
			return nil, errors.New("device certificate not found")
		}
		return up, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Streams()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for s.Ring.Stats().Fragments < 3 || up.runs.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fragments, uploader built %d times and run %d times", s.Ring.Stats().Fragments, builds.Load(), up.runs.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition with a deadline
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, frames := ringContents(t, c, "cam-test"); frames != clip.Decodable {
		t.Fatalf("%d frames captured, want %d", frames, clip.Decodable)
	}
}
