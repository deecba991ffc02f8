package stream

import (
	"log/slog"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/file"
	"github.com/kvscamd/kvscamd/fragmenter"
	iclock "github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// TestTimecodesAfterClockStepBackAcrossRestart replays a clip into the
// ring, steps the (fake, synchronised) wall clock back by an hour as NTP
// correcting a fast clock would while the daemon is down, and replays
// again: the second run's fragments still start after the first run's,
// so ring order is timecode order, and their frames are not bunched.
func TestTimecodesAfterClockStepBackAcrossRestart(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	c := testConfig(t, clip, false)
	clk := iclock.NewFake(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	clk.Advance(time.Minute) // uptime
	fake := map[config.Driver]SourceFactory{config.DriverFile: func(_ *config.Config, st config.Stream, _ *slog.Logger) (drivers.Source, error) {
		return file.New(file.Config{Path: st.Path, FPS: st.FPS, Clock: clk})
	}}
	run := func() {
		s, err := New(c, c.Streams[0], Options{Logger: quiet(), Sources: fake})
		if err != nil {
			t.Fatal(err)
		}
		runToEnd(t, s)
	}
	run()
	first := storedSpans(t, c)
	clk.Step(-time.Hour)
	clk.Advance(10 * time.Second)
	run()
	all := storedSpans(t, c)
	if len(first) == 0 || len(all) <= len(first) {
		t.Fatalf("%d fragments after the first run, %d after the second", len(first), len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Timecode < all[i-1].Timecode+all[i-1].Duration.Milliseconds() {
			t.Fatalf("fragment %d starts at %d, before fragment %d ends (%d + %v)", i, all[i].Timecode, i-1, all[i-1].Timecode, all[i-1].Duration)
		}
	}
	// The hour is absorbed gradually (10 % slower timeline), not by
	// frames 1 ms apart: the second run's fragments keep about their
	// frame rate's duration.
	for _, f := range all[len(first):] {
		if min := time.Duration(f.Frames) * time.Second / time.Duration(clip.FPS) * 85 / 100; f.Duration < min {
			t.Fatalf("fragment of %d frames lasts %v after the step back, want at least %v", f.Frames, f.Duration, min)
		}
	}
}

func storedSpans(t *testing.T, c *config.Config) []fragmenter.Fragment {
	t.Helper()
	r, err := ring.Open(c.RingDir("cam-test"), ring.Options{Capacity: int64(c.Streams[0].RingSize), ReadOnly: true, Logger: quiet()})
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
