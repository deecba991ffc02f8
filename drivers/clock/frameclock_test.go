package clock

import (
	"math/rand/v2"
	"testing"
	"time"
)

const period30 = time.Second / 30

// arrivals generates n arrival times of frames captured every capture
// period, delivered with delay(k) added.
func arrivals(n int, capture time.Duration, delay func(k int) time.Duration) (captured, arrived []time.Duration) {
	base := 100 * time.Second
	for k := range n {
		c := base + time.Duration(k)*capture
		captured = append(captured, c)
		arrived = append(arrived, c+delay(k))
	}
	return captured, arrived
}

func TestFrameClock(t *testing.T) {
	jitter := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name    string
		n       int
		capture time.Duration
		delay   func(k int) time.Duration
		// gapAt is a frame after which the encoder paused for gap.
		gapAt int
		gap   time.Duration
		// What the smoothed steps must satisfy, apart from around the
		// gap: all within [minStep, maxStep].
		minStep, maxStep time.Duration
		// maxDev bounds |smoothed − captured − mean delay| after the
		// first second.
		maxDev time.Duration
		// outside is the share of steps allowed outside [minStep,
		// maxStep]: a slot skipped or a grid restarted when the
		// encoder's rate is not the nominal one.
		outside float64
	}{
		{name: "even", n: 300, capture: period30, delay: func(int) time.Duration { return 5 * time.Millisecond },
			minStep: period30 - time.Millisecond, maxStep: period30 + time.Millisecond, maxDev: time.Millisecond},
		{name: "jitter ±12 ms", n: 3000, capture: period30,
			delay: func(int) time.Duration {
				return 20*time.Millisecond + time.Duration(jitter.IntN(24000)-12000)*time.Microsecond
			},
			minStep: 25 * time.Millisecond, maxStep: 42 * time.Millisecond, maxDev: 12 * time.Millisecond},
		{name: "pairs 1 ms apart", n: 3000, capture: period30, delay: func(k int) time.Duration {
			if k%2 == 0 {
				return 34 * time.Millisecond // held back until the next frame is written
			}
			return time.Millisecond
		}, minStep: 25 * time.Millisecond, maxStep: 42 * time.Millisecond, maxDev: 18 * time.Millisecond},
		{name: "bursts of 4", n: 3000, capture: period30, delay: func(k int) time.Duration {
			return time.Duration(3-k%4)*period30 + time.Duration(k%4)*time.Millisecond
		}, minStep: 25 * time.Millisecond, maxStep: 42 * time.Millisecond, maxDev: 3 * period30 / 2},
		{name: "real gap kept", n: 600, capture: period30, delay: func(int) time.Duration { return 10 * time.Millisecond },
			gapAt: 300, gap: 2 * time.Second,
			minStep: 25 * time.Millisecond, maxStep: 42 * time.Millisecond, maxDev: period30, outside: 0.01},
		{name: "encoder at 29.97 fps for an hour", n: 108_000, capture: time.Second * 1001 / 30000,
			delay: func(int) time.Duration {
				return 10*time.Millisecond + time.Duration(jitter.IntN(10000))*time.Microsecond
			},
			minStep: 25 * time.Millisecond, maxStep: 42 * time.Millisecond, maxDev: 2 * period30, outside: 0.002},
		{name: "encoder at 30.5 fps for an hour", n: 110_000, capture: time.Second * 2 / 61,
			delay:   func(int) time.Duration { return 10 * time.Millisecond },
			minStep: 25 * time.Millisecond, maxStep: 42 * time.Millisecond, maxDev: 2 * period30, outside: 0.02},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			captured, arrived := arrivals(c.n, c.capture, c.delay)
			if c.gapAt > 0 {
				for k := c.gapAt; k < c.n; k++ {
					captured[k] += c.gap
					arrived[k] += c.gap
				}
			}
			var meanDelay time.Duration
			for k := range arrived {
				meanDelay += (arrived[k] - captured[k]) / time.Duration(c.n)
			}
			fc := NewFrameClock(30)
			var prev time.Duration
			bad, settledSteps := 0, 0
			for k, a := range arrived {
				got := fc.Stamp(a)
				if got < a-FrameClockLag*period30 || got > a+FrameClockLead*period30 {
					t.Fatalf("frame %d: %v is outside the window around its arrival %v", k, got, a)
				}
				if k > 0 && got <= prev {
					t.Fatalf("frame %d: %v not after %v", k, got, prev)
				}
				settled := k > 30 && (c.gapAt == 0 || k < c.gapAt || k > c.gapAt+30)
				if settled {
					settledSteps++
					if step := got - prev; step < c.minStep || step > c.maxStep {
						bad++
						if float64(bad) > c.outside*float64(c.n) {
							t.Fatalf("frame %d: step %v outside [%v, %v], %d so far", k, step, c.minStep, c.maxStep, bad)
						}
					}
					if dev := (got - captured[k] - meanDelay).Abs(); dev > c.maxDev {
						t.Fatalf("frame %d: %v from its capture time plus the mean delay, want at most %v", k, dev, c.maxDev)
					}
				}
				if c.gapAt > 0 && k == c.gapAt {
					if step := got - prev; step < c.gap-FrameClockLag*period30 || step > c.gap+period30 {
						t.Fatalf("a pause of %v became a step of %v", c.gap, step)
					}
				}
				prev = got
			}
			t.Logf("%d of %d steps outside [%v, %v]", bad, settledSteps, c.minStep, c.maxStep)
		})
	}
}

func FuzzFrameClock(f *testing.F) {
	f.Add(30, []byte{33, 33, 1, 66, 33, 200, 0, 0, 0, 90})
	f.Add(25, []byte{0, 0, 0, 0, 255, 255, 40})
	f.Add(1, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, fps int, gaps []byte) {
		fps = 1 + abs(fps)%240
		p := time.Second / time.Duration(fps)
		fc := NewFrameClock(fps)
		a := time.Hour
		var prev time.Duration
		for k, g := range gaps {
			a += time.Duration(g) * time.Millisecond
			got := fc.Stamp(a)
			if k > 0 && got <= prev {
				t.Fatalf("frame %d: %v not after %v", k, got, prev)
			}
			// Strict increase may push a time past the lead bound by
			// at most a millisecond per frame of a burst; never below
			// the lag bound.
			if got < a-FrameClockLag*p-time.Millisecond || got > max(a+FrameClockLead*p, prev+time.Millisecond) {
				t.Fatalf("frame %d: %v for an arrival at %v", k, got, a)
			}
			prev = got
		}
	})
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func BenchmarkFrameClockStamp(b *testing.B) {
	fc := NewFrameClock(30)
	a := time.Hour
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a += period30 + time.Duration(i%7-3)*time.Millisecond
		fc.Stamp(a)
	}
}
