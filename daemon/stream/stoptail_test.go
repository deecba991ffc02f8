package stream

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/kvs"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/media"
)

// ringFragments lists what the stream's ring holds.
func ringFragments(t *testing.T, c *config.Config) []fragmenter.Fragment {
	t.Helper()
	r, err := ring.Open(c.RingDir(c.Streams[0].Name), ring.Options{Capacity: int64(c.Streams[0].RingSize), ReadOnly: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []fragmenter.Fragment
	if err := r.Range(time.Time{}, time.Time{}, func(_ ring.ID, f fragmenter.Fragment) error {
		f.Cluster = nil
		out = append(out, f)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A stop right after a fragment was cut, the worst case: the stream
// captures on until the last fragment is long enough for the service,
// and every frame the source delivered is stored.
func TestStopTailLastFragmentLongEnough(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	c := testConfig(t, clip, true)
	c.Streams[0].Realtime = true
	c.Streams[0].KeyframeInterval = config.Duration(time.Second)
	s, err := New(c, c.Streams[0], Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	waitFor(t, 30*time.Second, "two fragments stored", func() bool { return s.Ring().Stats().Fragments >= 2 })
	asked := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(asked); took > StopTailMax+10*time.Second {
		t.Errorf("stop took %v; the tail is bounded by %v", took, StopTailMax)
	}
	frags := ringFragments(t, c)
	last := frags[len(frags)-1]
	// Half a frame of slack, as for every cut at the target.
	frame := time.Second / time.Duration(clip.FPS)
	if last.Duration < kvs.MinFragmentDuration-frame/2 {
		t.Errorf("last fragment lasts %v, shorter than the service's %v minimum", last.Duration, kvs.MinFragmentDuration)
	}
	for i, f := range frags[:len(frags)-1] {
		if f.Duration < kvs.MinFragmentDuration-frame/2 {
			t.Errorf("fragment %d of %d lasts %v", i, len(frags), f.Duration)
		}
	}
	_, frames := ringContents(t, c, "cam-test")
	if st := s.Status(); uint64(frames) != st.FramesCaptured {
		t.Errorf("ring holds %d frames, the source delivered %d", frames, st.FramesCaptured)
	}
}

// silentSource delivers n frames of its inner source, then none, as a
// camera that froze; it returns when ctx ends.
type silentSource struct {
	drivers.Source
	n int
}

func (q *silentSource) Run(ctx context.Context, out chan<- media.Frame) error {
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan media.Frame)
	done := make(chan error, 1)
	go func() { done <- q.Source.Run(ictx, in) }()
	for i := 0; i < q.n; i++ {
		select {
		case fr := <-in:
			out <- fr
		case err := <-done:
			return err
		}
	}
	cancel()
	for {
		select {
		case <-in:
		case <-done:
			<-ctx.Done()
			return nil
		}
	}
}

// A source that delivers nothing more after the stop cannot hold it up:
// the tail ends after StopTailMax and the short fragment is stored as it
// is (kept, not lost).
func TestStopTailSilentSource(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	c := testConfig(t, clip, true)
	const silent config.Driver = "silent-test"
	delivered := clip.FPS / 3 // a third of the first fragment
	sources := map[config.Driver]SourceFactory{silent: func(c *config.Config, st config.Stream, log *slog.Logger) (drivers.Source, error) {
		inner, err := newFileSource(c, st, log)
		return &silentSource{Source: inner, n: delivered}, err
	}}
	st := c.Streams[0]
	st.Driver = silent
	st.KeyframeInterval = config.Duration(time.Second)
	s, err := New(c, st, Options{Logger: quiet(), Sources: sources})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	waitFor(t, 30*time.Second, "the frames delivered", func() bool { return s.Status().FramesCaptured >= uint64(delivered) })
	asked := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(asked); took > StopTailMax+10*time.Second {
		t.Errorf("stop took %v; the tail is bounded by %v", took, StopTailMax)
	}
	if _, frames := ringContents(t, c, "cam-test"); frames != delivered {
		t.Errorf("ring holds %d frames, the source delivered %d", frames, delivered)
	}
}
