package clock

import (
	"time"
)

// Tuning of the Timeline. They trade how fast a clock step is followed
// against how much frame durations are distorted meanwhile.
const (
	// StepTolerance is how far the measured offset wall−mono may move
	// before it counts as a clock step. Both clocks are slewed alike by
	// NTP, so the offset only moves on steps; the tolerance absorbs the
	// read-out noise of sampling two clocks.
	StepTolerance = 5 * time.Millisecond
	// MaxSlew is the fraction by which the timeline runs slow while it
	// absorbs a backward step: 33.3 ms frames become 30 ms apart, and a
	// 1 s step is absorbed within 10 s of capture.
	MaxSlew = 0.10
	// MaxForwardDelay bounds how long a forward step waits for a key
	// frame, so a stream without key frames still follows the clock.
	MaxForwardDelay = 10 * time.Second
	// maxSampleSpread discards offset samples taken while the goroutine
	// was preempted between reading the two clocks.
	maxSampleSpread = time.Millisecond
)

// Timeline turns monotonic capture instants into wall-clock instants. It is
// not safe for concurrent use; the Mapper owns one.
//
// Guarantees: Stamp never returns a time before or equal to the previous
// one at millisecond resolution; stamps are whole milliseconds.
type Timeline struct {
	clk      Clock
	anchored bool
	off      int64 // wall − mono in ns, as applied
	lastMs   int64 // previous stamp, Unix ms
	lastMono time.Duration
	fwdSince time.Duration // mono of the first frame that saw a pending forward step; -1 if none
	slewing  bool          // absorbing a backward step; continues below StepTolerance
	// unknown is set while frames are returned without wall time; once
	// anchored, the switch to wall time waits for a key frame (where a
	// fragment starts) for at most MaxForwardDelay from anchorMono.
	unknown    bool
	anchorMono time.Duration
}

// NewTimeline returns a Timeline reading clk.
func NewTimeline(clk Clock) *Timeline {
	return &Timeline{clk: clk, fwdSince: -1}
}

// Anchored reports whether the timeline knows the wall offset, trying to
// learn it if the clock has become synchronised.
func (t *Timeline) Anchored() bool {
	if !t.anchored && t.clk.Synced() {
		if target, ok := t.sample(); ok {
			t.off, t.anchored = target, true
			t.anchorMono = t.clk.Mono()
		}
	}
	return t.anchored
}

// Offset returns the applied offset wall−mono; meaningful once Anchored.
func (t *Timeline) Offset() time.Duration { return time.Duration(t.off) }

// sample measures wall−mono, bracketing the wall reading between two
// monotonic readings so that preemption cannot skew it unnoticed.
func (t *Timeline) sample() (int64, bool) {
	for range 3 {
		m1 := t.clk.Mono()
		w := t.clk.Now().UnixNano()
		m2 := t.clk.Mono()
		if m2-m1 <= maxSampleSpread {
			return w - int64(m1+(m2-m1)/2), true
		}
	}
	return 0, false
}

// Stamp returns the wall time of a frame captured at mono; key marks a key
// frame (where a forward step may be applied). ok is false while the
// timeline has no anchor, i.e. the clock has never been synchronised; the
// frame then goes on with its monotonic instant only. After frames without
// wall time, the first one with it is a key frame (or one MaxForwardDelay
// after the anchor, for a stream without key frames), so that a fragment
// never mixes the two. Frames must be stamped in capture order.
func (t *Timeline) Stamp(mono time.Duration, key bool) (wall time.Time, ok bool) {
	if !t.Anchored() || (t.unknown && !key && mono-t.anchorMono < MaxForwardDelay) {
		t.unknown = true
		return time.Time{}, false
	}
	t.unknown = false
	// The offset is followed only while the clock is vouched for: an
	// unsynchronised wall clock may be wrong in any direction.
	if t.clk.Synced() {
		if target, ok := t.sample(); ok {
			t.follow(target, mono, key)
		}
	}
	ms := (int64(mono) + t.off) / int64(time.Millisecond)
	if t.lastMs != 0 && ms <= t.lastMs {
		ms = t.lastMs + 1
	}
	t.lastMs, t.lastMono = ms, mono
	return time.UnixMilli(ms), true
}

// follow moves the applied offset towards target, the offset the clock
// shows now.
func (t *Timeline) follow(target int64, mono time.Duration, key bool) {
	diff := target - t.off
	switch {
	case diff > int64(StepTolerance):
		// Forward step: jump at a fragment boundary, where it becomes a
		// gap between fragments.
		if t.fwdSince < 0 {
			t.fwdSince = mono
		}
		t.slewing = false
		if key || mono-t.fwdSince >= MaxForwardDelay {
			t.off, t.fwdSince = target, -1
		}
	case diff < -int64(StepTolerance) || (t.slewing && diff < 0):
		// Backward step: slew, down to zero difference once started.
		// Going back at once would repeat timecodes already sent.
		t.fwdSince, t.slewing = -1, true
		elapsed := max(mono-t.lastMono, 0)
		t.off -= min(-diff, int64(float64(elapsed)*MaxSlew))
	default:
		t.fwdSince, t.slewing = -1, false
	}
}
