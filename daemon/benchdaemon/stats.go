package main

import (
	"math"
	"slices"
)

// percentile returns the p-th percentile (0..100) of xs by nearest rank;
// NaN for no data.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func median(xs []float64) float64 { return percentile(xs, 50) }

// theilSen returns the median of the pairwise slopes of (t, y): a trend
// that a few outliers (a reconnect's burst of goroutines, a GC cycle
// caught at its peak) cannot move much.
func theilSen(t, y []float64) float64 {
	var slopes []float64
	// Subsample long series: the estimate needs a few thousand pairs, not
	// millions.
	step := max(1, len(t)/400)
	for i := 0; i < len(t); i += step {
		for j := i + step; j < len(t); j += step {
			if dt := t[j] - t[i]; dt > 0 {
				slopes = append(slopes, (y[j]-y[i])/dt)
			}
		}
	}
	if len(slopes) == 0 {
		return 0
	}
	return median(slopes)
}

// growthCheck is the verdict on one sampled series.
type growthCheck struct {
	Series string `json:"series"`
	// First and Second are the medians of the floors (see growth) of the
	// judged run's first and second halves.
	First  float64 `json:"first_half_floor"`
	Second float64 `json:"second_half_floor"`
	// Trend is the robust slope of the floors times half the judged span:
	// how much the floor rises in half the run, measured so that single
	// windows do not decide it.
	Trend  float64 `json:"floor_trend_per_half"`
	Growth float64 `json:"growth"`
	Bound  float64 `json:"bound"`
	OK     bool    `json:"ok"`
}

// growthWindows is how many windows the judged run is cut into. Each
// window's minimum is its floor: what the series comes back down to after
// a collection, a reconnect's burst of goroutines or a fault's retry
// buffers. A leak lifts every floor; the garbage collector's sawtooth
// (anonymous RSS swinging 14-24 MiB with GOGC=50) and a fault caught on
// the last samples lift only peaks. Judged on the samples themselves, the
// sawtooth alone failed a flat 3-minute run now and then.
const growthWindows = 12

// growth decides whether y(t) grows, after dropping the warm-up (the
// first warmFrac of the samples). The rest is cut into growthWindows
// windows and each is reduced to its floor. Growth is the larger of the
// rise of the second half's median floor over the first half's and the
// floors' Theil-Sen slope times half the judged span. It fails when growth
// exceeds max(abs, rel × first-half floor). A flat series with noise,
// spikes and a sawtooth passes; a leak of any steady rate fails once it
// adds up to the bound within half the run.
func growth(name string, t, y []float64, warmFrac, abs, rel float64) growthCheck {
	n := len(t)
	w := int(float64(n) * warmFrac)
	t, y = t[w:], y[w:]
	g := growthCheck{Series: name, OK: true}
	win := len(t) / growthWindows
	if win < 1 {
		g.OK = false // too short to say; a caller asked for a verdict
		return g
	}
	var ft, fy []float64
	for i := 0; i+win <= len(t); i += win {
		ft = append(ft, (t[i]+t[i+win-1])/2)
		fy = append(fy, slices.Min(y[i:i+win]))
	}
	h := len(fy) / 2
	g.First = median(fy[:h])
	g.Second = median(fy[h:])
	g.Trend = theilSen(ft, fy) * (t[len(t)-1] - t[0]) / 2
	g.Growth = max(g.Second-g.First, g.Trend)
	g.Bound = max(abs, rel*g.First)
	g.OK = g.Growth <= g.Bound
	return g
}
