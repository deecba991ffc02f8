package main

import (
	"bytes"
	"encoding/xml"
	"math/rand/v2"
	"strings"
	"testing"
)

// The soak's verdict must pass a flat, noisy series with spikes and fail
// a slow leak hidden in the same noise.
func TestGrowth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 300
	var ts, flat, leak, spiky, saw, sawLeak []float64
	for i := range n {
		ts = append(ts, float64(i)*2)
		noise := rng.Float64() - 0.5
		flat = append(flat, 20+noise)
		// +12 over the run: +4.8 over half the judged part, above the
		// bound of 4.
		slope := float64(i) * 0.04
		leak = append(leak, 20+noise+slope)
		s := 20 + noise
		if i%50 == 0 || i == n-1 {
			s += 15 // a reconnect's burst, even on the last sample
		}
		spiky = append(spiky, s)
		// The collector's sawtooth seen through 2 s samples: 14-24 with a
		// drifting phase, and a fault's retry buffers on the last 5
		// samples. Judged on the raw samples this rose by more than the
		// bound in a flat run.
		gc := 14 + 10*rng.Float64()
		if i >= n-5 {
			gc += 6
		}
		saw = append(saw, gc)
		sawLeak = append(sawLeak, gc+slope)
	}
	for _, c := range []struct {
		name string
		y    []float64
		ok   bool
	}{
		{"flat", flat, true}, {"spiky", spiky, true}, {"leak", leak, false},
		{"sawtooth", saw, true}, {"leak under a sawtooth", sawLeak, false},
	} {
		g := growth(c.name, ts, c.y, 0.2, 4, 0.15)
		if g.OK != c.ok {
			t.Errorf("%s: ok=%v, want %v (%+v)", c.name, g.OK, c.ok, g)
		}
	}
	if g := growth("short", ts[:5], flat[:5], 0.2, 4, 0.15); g.OK {
		t.Errorf("a series too short to judge passed: %+v", g)
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for p, want := range map[float64]float64{0: 1, 50: 3, 99: 5, 100: 5} {
		if got := percentile(xs, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if xs[0] != 5 {
		t.Error("percentile reordered its input")
	}
}

// The plot is well-formed XML with one polyline per series, each with one
// point per sample.
func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	ts := []float64{0, 1, 2, 3}
	err := writeSVG(&b, "a < b", ts, []series{{"rss", "MiB", []float64{1, 2, 2, 3}}, {"flat", "n", []float64{7, 7, 7, 7}}})
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	lines := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("invalid SVG: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
			for _, a := range se.Attr {
				if a.Name.Local == "points" && len(strings.Fields(a.Value)) != len(ts) {
					t.Errorf("polyline has %d points, want %d", len(strings.Fields(a.Value)), len(ts))
				}
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d polylines, want 2", lines)
	}
}

func TestVideoBytes(t *testing.T) {
	c := &clipInfo{Sizes: []int64{10, 1, 2}, prefix: []int64{0, 10, 11, 13}}
	for frames, want := range map[uint64]int64{0: 0, 1: 10, 3: 13, 4: 23, 8: 13*2 + 11} {
		if got := c.videoBytes(frames); got != want {
			t.Errorf("videoBytes(%d) = %d, want %d", frames, got, want)
		}
	}
}
