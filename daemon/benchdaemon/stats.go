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
	Series string  `json:"series"`
	First  float64 `json:"first_half_median"`
	Second float64 `json:"second_half_median"`
	// Trend is the robust slope of the second half times its span: how
	// much the series rose over the second half, measured so that single
	// samples do not decide it. Extrapolated over the whole run instead,
	// it doubled the garbage collector's sawtooth (29-38 MiB in a 3-minute
	// run) into a "leak" of 6.9 MiB.
	Trend  float64 `json:"second_half_trend"`
	Growth float64 `json:"growth"`
	Bound  float64 `json:"bound"`
	OK     bool    `json:"ok"`
}

// growth decides whether y(t) grows, after dropping the warm-up (the
// first warmFrac of the samples): growth is the larger of the rise of the
// second half's median over the first half's and the second half's
// Theil-Sen slope over the second half's span. It fails when growth
// exceeds max(abs, rel × first-half median). A flat series with noise and
// spikes passes; a leak of any steady rate fails once it adds up to the
// bound within half the run.
func growth(name string, t, y []float64, warmFrac, abs, rel float64) growthCheck {
	n := len(t)
	w := int(float64(n) * warmFrac)
	t, y = t[w:], y[w:]
	g := growthCheck{Series: name, OK: true}
	if len(t) < 8 {
		g.OK = false // too short to say; a caller asked for a verdict
		return g
	}
	h := len(t) / 2
	g.First = median(y[:h])
	g.Second = median(y[h:])
	g.Trend = theilSen(t[h:], y[h:]) * (t[len(t)-1] - t[h])
	g.Growth = max(g.Second-g.First, g.Trend)
	g.Bound = max(abs, rel*g.First)
	g.OK = g.Growth <= g.Bound
	return g
}
