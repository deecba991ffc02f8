package clock

import (
	"context"
	"testing"
	"time"

	iclock "github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/media"
)

// trueStart is the real time at which the test camera starts (mono 10 s).
var trueStart = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

const (
	bootMono = 10 * time.Second
	frameDur = time.Second / 30
)

// rig is a camera on a fake clock whose wall clock starts wrong.
type rig struct {
	clk *iclock.Fake
}

func newRig(synced bool) *rig {
	wall := time.Unix(0, 0).Add(bootMono) // a Pi without RTC: 1970 + uptime
	if synced {
		wall = trueStart
	}
	// Start bootMono earlier, so that the monotonic clock reads bootMono.
	clk := iclock.NewFake(wall.Add(-bootMono))
	clk.Advance(bootMono)
	clk.SetSynced(synced)
	return &rig{clk: clk}
}

// truth is the true wall time of a capture at mono.
func truth(mono time.Duration) time.Time { return trueStart.Add(mono - bootMono) }

// sync makes the wall clock right, as NTP does at its first sync.
func (r *rig) sync() {
	r.clk.Step(truth(r.clk.Mono()).Sub(r.clk.Now()))
	r.clk.SetSynced(true)
}

func TestParseSyncMode(t *testing.T) {
	cases := []struct {
		in   string
		want SyncMode
		err  bool
	}{{"wait", SyncWait, false}, {"", SyncWait, false}, {"trust", SyncTrust, false}, {"always", 0, true}}
	for _, c := range cases {
		got, err := ParseSyncMode(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseSyncMode(%q) = %v, %v; want %v, err %v", c.in, got, err, c.want, c.err)
		}
		if err == nil && c.in != "" && got.String() != c.in {
			t.Errorf("String() = %q, want %q", got.String(), c.in)
		}
	}
}

// stampAll stamps n frames 1/30 s apart and checks the invariant: strictly
// increasing at millisecond resolution. key marks every 30th frame.
func stampAll(t *testing.T, r *rig, tl *Timeline, n int, last *time.Time) []time.Time {
	t.Helper()
	var out []time.Time
	for i := range n {
		r.clk.Advance(frameDur)
		w, ok := tl.Stamp(r.clk.Mono(), i%30 == 0)
		if !ok {
			t.Fatalf("frame %d: not stamped although anchored", i)
		}
		if w.UnixMilli() <= last.UnixMilli() {
			t.Fatalf("frame %d: %v not after %v", i, w, *last)
		}
		*last = w
		out = append(out, w)
	}
	return out
}

func near(a, b time.Time, tol time.Duration) bool {
	d := a.Sub(b)
	return d <= tol && d >= -tol
}

func TestTimelineUnsyncedThenSync(t *testing.T) {
	r := newRig(false)
	tl := NewTimeline(r.clk)
	for i := range 90 {
		r.clk.Advance(frameDur)
		if _, ok := tl.Stamp(r.clk.Mono(), i%30 == 0); ok {
			t.Fatal("stamped with an unsynchronised clock")
		}
	}
	r.sync()
	// Synchronised in the middle of a GOP: wall time starts at the next
	// key frame, so that no fragment mixes the two.
	for i := 90; i < 105; i++ {
		r.clk.Advance(frameDur)
		if _, ok := tl.Stamp(r.clk.Mono(), false); ok {
			t.Fatalf("frame %d: wall time before the next key frame", i)
		}
	}
	r.clk.Advance(frameDur)
	w, ok := tl.Stamp(r.clk.Mono(), true)
	if !ok || !near(w, truth(r.clk.Mono()), time.Millisecond) {
		t.Fatalf("key frame after sync: %v, ok %v; want %v", w, ok, truth(r.clk.Mono()))
	}
	// The offset places the frames stamped without wall time exactly.
	if got := time.Unix(0, int64(tl.Offset()+bootMono)); !near(got, trueStart, time.Millisecond) {
		t.Fatalf("offset puts boot+%v at %v, want %v", bootMono, got, trueStart)
	}
	last := w
	stampAll(t, r, tl, 60, &last)
	if got := truth(r.clk.Mono()); !near(last, got, time.Millisecond) {
		t.Fatalf("after sync: %v, true %v", last, got)
	}
}

func TestTimelineSyncWithoutKeyFrames(t *testing.T) {
	r := newRig(false)
	tl := NewTimeline(r.clk)
	r.clk.Advance(frameDur)
	tl.Stamp(r.clk.Mono(), true)
	r.sync()
	n := 0
	for ; n < int(2*MaxForwardDelay/frameDur); n++ {
		r.clk.Advance(frameDur)
		if _, ok := tl.Stamp(r.clk.Mono(), false); ok {
			break
		}
	}
	if d := time.Duration(n) * frameDur; d < MaxForwardDelay-frameDur || d > MaxForwardDelay+frameDur {
		t.Fatalf("wall time began after %v without key frames, want %v", d, MaxForwardDelay)
	}
}

func TestTimelineStepBackward(t *testing.T) {
	r := newRig(true)
	tl := NewTimeline(r.clk)
	var last time.Time
	stampAll(t, r, tl, 30, &last)
	r.clk.Step(-2 * time.Second)
	ws := stampAll(t, r, tl, 30, &last)
	// Right after the step the timeline is still ahead of the clock, and
	// frames are closer together than 1/30 s but never collapse.
	if d := ws[1].Sub(ws[0]); d < 28*time.Millisecond || d >= frameDur {
		t.Fatalf("slewed frame interval %v, want about %v", d, "30ms")
	}
	// 2 s at 10 % needs 20 s of capture; give it 25 s.
	stampAll(t, r, tl, 25*30, &last)
	if want := r.clk.Now(); !near(last, want, time.Millisecond) {
		t.Fatalf("after slewing: %v, clock %v", last, want)
	}
}

func TestTimelineStepForward(t *testing.T) {
	r := newRig(true)
	tl := NewTimeline(r.clk)
	var last time.Time
	stampAll(t, r, tl, 35, &last) // ends 5 frames into a GOP
	before := last
	r.clk.Step(5 * time.Second)
	// The step waits for the next key frame: inside the GOP nothing jumps.
	for i := 35; i < 60; i++ {
		r.clk.Advance(frameDur)
		w, _ := tl.Stamp(r.clk.Mono(), false)
		if w.Sub(last) > 40*time.Millisecond || !w.After(last) {
			t.Fatalf("frame %d jumped inside a GOP: %v after %v", i, w, last)
		}
		last = w
	}
	r.clk.Advance(frameDur)
	w, _ := tl.Stamp(r.clk.Mono(), true)
	if !near(w, r.clk.Now(), time.Millisecond) {
		t.Fatalf("key frame after step: %v, clock %v", w, r.clk.Now())
	}
	if w.Sub(before) < 5*time.Second {
		t.Fatalf("forward step not applied: %v after %v", w, before)
	}
	last = w
	stampAll(t, r, tl, 30, &last)
}

func TestTimelineForwardWithoutKeyFrames(t *testing.T) {
	r := newRig(true)
	tl := NewTimeline(r.clk)
	var last time.Time
	r.clk.Advance(frameDur)
	tl.Stamp(r.clk.Mono(), false)
	r.clk.Step(time.Minute)
	for range int(MaxForwardDelay/frameDur) + 2 {
		r.clk.Advance(frameDur)
		w, _ := tl.Stamp(r.clk.Mono(), false)
		if !w.After(last) {
			t.Fatal("not increasing")
		}
		last = w
	}
	if !near(last, r.clk.Now(), time.Millisecond) {
		t.Fatalf("forward step never applied without key frames: %v vs %v", last, r.clk.Now())
	}
}

func TestTimelineMillisecondDistinct(t *testing.T) {
	// Frames closer than 1 ms (a burst from a confused driver) still get
	// distinct, increasing milliseconds.
	r := newRig(true)
	tl := NewTimeline(r.clk)
	var last time.Time
	for range 100 {
		r.clk.Advance(100 * time.Microsecond)
		w, _ := tl.Stamp(r.clk.Mono(), false)
		if w.UnixMilli() <= last.UnixMilli() {
			t.Fatalf("%v not after %v", w, last)
		}
		last = w
	}
}

func frame(seq uint64, key bool, mono time.Duration, size int) media.Frame {
	return media.Frame{NALUs: [][]byte{make([]byte, size)}, Key: key, Seq: seq, Mono: mono}
}

// TestMapperPassesUnsyncedFrames checks that frames never wait for the
// clock: before it is synchronised they are delivered at once without
// wall time, after it (from the next key frame) with it.
func TestMapperPassesUnsyncedFrames(t *testing.T) {
	r := newRig(false)
	m := NewMapper(MapperConfig{Clock: r.clk})
	out := make(chan media.Frame, 1)
	stop := m.Start(t.Context(), out)
	defer stop()
	const unsynced = 300 // 10 s without a synchronised clock
	for i := range unsynced + 60 {
		if i == unsynced {
			r.sync()
		}
		r.clk.Advance(frameDur)
		m.Push(frame(uint64(i), i%30 == 0, r.clk.Mono(), 1000))
		f := <-out // delivered before the next frame is captured
		if f.Seq != uint64(i) {
			t.Fatalf("frame %d arrived as seq %d", i, f.Seq)
		}
		if i < unsynced {
			if !f.Time.IsZero() || f.Mono != r.clk.Mono() {
				t.Fatalf("unsynchronised frame %d: time %v mono %v", i, f.Time, f.Mono)
			}
			continue
		}
		if !near(f.Time, truth(f.Mono), time.Millisecond) {
			t.Fatalf("frame %d stamped %v, captured at true %v", i, f.Time, truth(f.Mono))
		}
	}
	if s := m.Stats(); s.Frames != unsynced+60 || s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMapperDropsWholeGOPsWhenFull(t *testing.T) {
	r := newRig(true)
	// Room for about 2.5 GOPs of 30 frames of 1000 bytes.
	m := NewMapper(MapperConfig{Clock: r.clk, MaxHoldBytes: 75 * (1000 + frameOverhead + 24)})
	for i := range 5 * 30 {
		r.clk.Advance(frameDur)
		m.Push(frame(uint64(i), i%30 == 0, r.clk.Mono(), 1000))
	}
	if got := m.Stats().Dropped; got != 3*30 {
		t.Fatalf("dropped %d frames, want 3 whole GOPs (90)", got)
	}
	out := make(chan media.Frame, 64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, out)
	for i := range 60 {
		f := <-out
		if want := uint64(90 + i); f.Seq != want {
			t.Fatalf("got seq %d, want %d", f.Seq, want)
		}
		if i == 0 && !f.Key {
			t.Fatal("queue after dropping does not start with a key frame")
		}
	}
}

func TestMapperSlowReceiverKeepsOrder(t *testing.T) {
	r := newRig(true)
	m := NewMapper(MapperConfig{Clock: r.clk})
	out := make(chan media.Frame) // unbuffered: every send waits for the reader
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, out)
	const n = 500
	for i := range n { // capture far ahead of the receiver; Push never blocks
		r.clk.Advance(frameDur)
		m.Push(frame(uint64(i), i%30 == 0, r.clk.Mono(), 100))
	}
	for i := range n {
		if f := <-out; f.Seq != uint64(i) {
			t.Fatalf("got %d want %d", f.Seq, i)
		}
	}
	if d := m.Stats().Dropped; d != 0 {
		t.Fatalf("dropped %d", d)
	}
}

func BenchmarkTimelineStampSystem(b *testing.B) {
	tl := NewTimeline(System{Mode: SyncTrust})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tl.Stamp(iclock.Monotonic(), i%30 == 0)
	}
}

func BenchmarkMapperPushRun(b *testing.B) {
	m := NewMapper(MapperConfig{Clock: System{Mode: SyncTrust}})
	out := make(chan media.Frame, 256)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, out)
	nalus := [][]byte{make([]byte, 8000)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Push(media.Frame{NALUs: nalus, Key: i%30 == 0, Seq: uint64(i), Mono: iclock.Monotonic()})
		<-out
	}
}
