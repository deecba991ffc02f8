package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/media"
)

var start = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func TestReplayAsFastAsTaken(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	src, err := New(Config{Path: clip.Path(), FPS: 30, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame) // unbuffered: the source must wait
	done := make(chan error, 1)
	go func() { done <- src.Run(t.Context(), out); close(out) }()
	k := 0
	keys := 0
	for fr := range out {
		if fr.Seq != uint64(k) || !fr.Time.Equal(start.Add(time.Duration(k)*time.Second/30)) {
			t.Fatalf("frame %d: seq %d at %v", k, fr.Seq, fr.Time)
		}
		if fr.Key != h264.IsIDR(fr.NALUs) {
			t.Fatalf("frame %d: key flag %v", k, fr.Key)
		}
		if fr.Key {
			keys++
		}
		k++
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := src.Stats()
	if k != clip.Frames || keys != clip.IDRs || st.Frames != uint64(k) || st.Dropped != 0 {
		t.Fatalf("%d frames, %d keys, stats %+v", k, keys, st)
	}
}

func TestLoopKeepsCounting(t *testing.T) {
	clip := testclips.Get("multislice.h264")
	src, err := New(Config{Path: clip.Path(), FPS: 25, Start: start, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan media.Frame)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	want := 2*clip.Frames + 10
	var last time.Time
	for k := range want {
		fr := <-out
		if fr.Seq != uint64(k) || !fr.Time.After(last) && k > 0 {
			t.Fatalf("frame %d: seq %d at %v after %v", k, fr.Seq, fr.Time, last)
		}
		last = fr.Time
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if got := last.Sub(start); got != time.Duration(want-1)*time.Second/25 {
		t.Fatalf("last frame at +%v", got)
	}
}

// TestRealtimeDropsWhenReceiverIsBusy runs a realtime replay whose clock
// is already past every frame's time and whose receiver never reads:
// every frame is dropped and counted, and the source does not block.
func TestRealtimeDropsWhenReceiverIsBusy(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	src, err := New(Config{Path: clip.Path(), FPS: 30, Start: start, Realtime: true,
		Clock: clock.NewFake(start.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Run(t.Context(), make(chan media.Frame)); err != nil {
		t.Fatal(err)
	}
	if st := src.Stats(); st.Dropped != uint64(clip.Frames) || st.Frames != 0 {
		t.Fatalf("stats %+v, want all %d dropped", st, clip.Frames)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a video"), 0o644)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Path: testclips.Get("high-aud.h264").Path(), FPS: 0}, "fps 0 out of range"},
		{Config{Path: filepath.Join(dir, "none.h264"), FPS: 30}, "set path"},
		{Config{Path: text, FPS: 30}, "not an Annex-B H.264 stream"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestHonoursClockSync replays with a clock that is not synchronised at
// first: frames carry their monotonic instants and no wall time, and after
// the clock is synchronised they carry wall time = mono + offset from the
// next key frame on.
func TestHonoursClockSync(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	clk := clock.NewFake(time.Unix(0, 0))
	clk.Advance(7 * time.Second)
	clk.SetSynced(false)
	src, err := New(Config{Path: clip.Path(), FPS: 30, Clock: clk, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame) // unbuffered: the test paces the replay
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go src.Run(ctx, out)
	stamped := 0
	for k := range 3 * clip.Frames {
		fr := <-out
		mono := 7*time.Second + time.Duration(k)*time.Second/30
		if fr.Mono != mono {
			t.Fatalf("frame %d: mono %v, want %v", k, fr.Mono, mono)
		}
		switch {
		case k == clip.Frames:
			clk.Set(start) // NTP: the wall clock is right from now on
			clk.SetSynced(true)
			fallthrough
		case k < clip.Frames:
			if !fr.Time.IsZero() {
				t.Fatalf("frame %d stamped %v with an unsynchronised clock", k, fr.Time)
			}
		case !fr.Time.IsZero():
			stamped++
			// start − 7 s is when the boot began on the wall clock.
			if want := start.Add(mono - 7*time.Second); fr.Time.Sub(want).Abs() > time.Millisecond {
				t.Fatalf("frame %d stamped %v, want %v", k, fr.Time, want)
			}
		}
	}
	if stamped < clip.Frames {
		t.Fatalf("only %d frames with wall time after sync", stamped)
	}
}

// TestRealtimeWakesInBatches: a realtime replay wakes once per wake
// interval and hands over every frame due by then, each with its own
// timestamp, rather than waking for every frame.
func TestRealtimeWakesInBatches(t *testing.T) {
	clip := testclips.Get("high-aud.h264")
	for _, tc := range []struct {
		name     string
		interval time.Duration
		batch    int // frames per wake after the first frame, which goes at once
	}{
		{"default", 0, 3}, // 100 ms at 30 fps
		{"per-frame", -1, 1},
		{"longer", 200 * time.Millisecond, 6},
		{"capped", time.Second, drivers.MaxBatchFrames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			src, err := New(Config{Path: clip.Path(), FPS: 30, Start: start, Realtime: true, Clock: clk, WakeInterval: tc.interval})
			if err != nil {
				t.Fatal(err)
			}
			out := make(chan media.Frame, 64)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, out) }()
			at := func(k int) time.Time { return start.Add(time.Duration(k) * time.Second / 30) }
			take := func(k, n int) {
				t.Helper()
				clk.BlockUntil(1) // asleep again: the batch is out
				if got := len(out); got != n {
					t.Fatalf("frames %d..: %d handed over, want %d", k, got, n)
				}
				for i := range n {
					if fr := <-out; !fr.Time.Equal(at(k + i)) {
						t.Fatalf("frame %d stamped %v, want %v", k+i, fr.Time, at(k+i))
					}
				}
			}
			moveTo := func(t time.Time) { clk.Advance(t.Sub(clk.Now())) }
			take(0, 1)
			for k := 1; k < 4*tc.batch; k += tc.batch {
				last := k + tc.batch - 1 // the batch goes when its last frame is due
				moveTo(at(last).Add(-time.Microsecond))
				clk.BlockUntil(1)
				if len(out) != 0 {
					t.Fatalf("frames %d..%d: %d handed over before the last was due", k, last, len(out))
				}
				moveTo(at(last))
				take(k, tc.batch)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
