package clock

import "time"

// Tuning of FrameClock.
const (
	// frameClockGain is the share of a frame's arrival error that moves
	// the frame clock's phase: 1/32 averages the jitter of a pipe over
	// about a second at 30 fps, and moves a frame by at most a few per
	// cent of a period, so that readers that round timestamps to the
	// frame rate (ffmpeg) never see two frames in one slot.
	frameClockGain = 1.0 / 32
	// frameRateGain moves the period estimate, the second order of the
	// loop (critically damped with frameClockGain).
	frameRateGain = frameClockGain * frameClockGain / 2
	// maxRateError bounds the period estimate around the nominal one: a
	// real encoder is off by parts per thousand, not per cent.
	maxRateError = 0.02
	// FrameClockLag is how many frame periods a smoothed time may lie
	// before the arrival time (frames delivered late, in a burst), and
	// FrameClockLead how many after it (frames delivered early, after
	// such a burst). Beyond the lag, a late frame is a real gap and shows
	// as one. Measured on ffmpeg -re through a pipe on a busy machine,
	// stalls of up to 200 ms followed by bursts are common; 4 periods
	// spread most of them out again.
	FrameClockLag  = 4
	FrameClockLead = 2
)

// FrameClock turns the arrival times of frames from a pipe, which come in
// bursts, into capture times on an even grid at the nominal frame rate.
// It is a delay-locked loop: each frame is predicted one period after the
// previous one, and the prediction is pulled a little (frameClockGain)
// towards the arrival, while the period estimate follows the encoder's
// true rate, so in steady state the grid stays centred on the arrivals
// instead of drifting away from them over hours. Hard bounds keep it
// honest: a smoothed time is never more than FrameClockLag periods before
// or FrameClockLead periods after its arrival, so it cannot drift from the
// clock the arrivals are read on at all, and a real pause of the encoder
// remains a gap (shortened by at most FrameClockLag periods, which the
// following frames give back within about a second). Times strictly
// increase.
//
// The zero value is not usable; use NewFrameClock. It is a small value,
// owned by one capture goroutine.
type FrameClock struct {
	nomDur  time.Duration
	nominal float64 // ns
	period  float64 // ns, estimated
	next    float64 // predicted time of the next frame, ns
	last    time.Duration
	started bool
	// credit is how much more than FrameClockLead the grid may run
	// ahead of the arrivals, granted by a jump over a stall: if the
	// stall was the encoder being held up rather than a real gap, the
	// frames it held back come in a burst and are spread over the jump.
	credit time.Duration
	// Frames are put into slots of a grid of nominal periods from
	// origin: slot times step by exact periods, which readers that
	// round timestamps to the frame rate (ffmpeg) turn into distinct
	// frame numbers. slot is the last slot used.
	origin time.Duration
	slot   int64
}

// NewFrameClock returns a frame clock for fps frames per second.
func NewFrameClock(fps int) FrameClock {
	p := float64(time.Second) / float64(max(fps, 1))
	return FrameClock{nomDur: time.Duration(p), nominal: p, period: p}
}

// Reset forgets the history, for a new encoder run: its first frame is
// stamped at its arrival.
func (c *FrameClock) Reset() { c.started, c.period, c.credit = false, c.nominal, 0 }

// Stamp returns the capture time of a frame that arrived at arrival (same
// clock, e.g. CLOCK_MONOTONIC). Calls must be in arrival order.
func (c *FrameClock) Stamp(arrival time.Duration) time.Duration {
	a := float64(arrival)
	first := !c.started
	t := a
	if !first {
		e := a - c.next
		t = c.next + frameClockGain*e
		// A stall or gap says nothing about the encoder's rate: the
		// period follows only errors within one frame.
		c.period += frameRateGain * min(max(e, -c.nominal), c.nominal)
		c.period = min(max(c.period, c.nominal*(1-maxRateError)), c.nominal*(1+maxRateError))
	}
	c.started = true
	out := time.Duration(t)
	lo := arrival - FrameClockLag*c.nomDur
	if out < lo {
		// Far behind the arrivals: a real gap (or a stall longer than
		// the lag). Jump by whole periods, so that the grid keeps its
		// phase, to the first slot inside the window.
		p := time.Duration(c.period)
		jump := (lo - out + p - 1) / p * p
		out += jump
		c.credit += jump
	}
	hi := arrival + FrameClockLead*c.nomDur + c.credit
	out = min(out, hi)
	// The credit lasts only while it is used.
	c.credit = min(c.credit, max(out-arrival-FrameClockLead*c.nomDur, 0))
	c.next = float64(out) + c.period

	// Into the grid: the nearest free slot, unless that is more than a
	// period from the loop's time or outside the window (the encoder
	// runs faster than nominal, or after a jump): then the grid starts
	// again at this frame.
	if !first {
		k := max(int64((out-c.origin+c.nomDur/2)/c.nomDur), c.slot+1)
		at := c.origin + time.Duration(k)*c.nomDur
		if (at-out).Abs() <= c.nomDur && at >= lo && at <= hi && at > c.last {
			c.slot, c.last = k, at
			return at
		}
		// Leaving the grid, keep the step near a period where the
		// window allows, and strictly increasing always.
		out = max(min(max(out, c.last+4*c.nomDur/5), hi), c.last+time.Millisecond)
	}
	c.origin, c.slot, c.last = out, 0, out
	return out
}
