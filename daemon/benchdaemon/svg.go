package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// series is one sampled quantity to plot against time.
type series struct {
	Name string
	Unit string
	Y    []float64
}

// Plot geometry, in SVG user units.
const (
	plotWidth   = 900
	panelHeight = 150
	marginLeft  = 80
	marginRight = 20
	marginTop   = 40
	panelGap    = 40
)

// writeSVG draws each series in its own panel against the shared time
// axis t (seconds), one polyline per panel, with the range of each axis
// printed at its ends. It needs no plotting library: a soak report must
// be readable in any browser without extra tools.
func writeSVG(w io.Writer, title string, t []float64, ss []series) error {
	h := marginTop + len(ss)*(panelHeight+panelGap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", plotWidth, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15">%s</text>`+"\n", marginLeft, html.EscapeString(title))
	tmin, tmax := bounds(t)
	for i, s := range ss {
		top := float64(marginTop + i*(panelHeight+panelGap))
		x0, x1 := float64(marginLeft), float64(plotWidth-marginRight)
		y0, y1 := top+panelHeight, top
		ymin, ymax := bounds(s.Y)
		// A flat line sits in the middle of a panel with some headroom,
		// so that flat does not look like a full-scale swing.
		if ymax-ymin < 1e-9*math.Max(1, math.Abs(ymax)) {
			ymin, ymax = ymin-1, ymax+1
		}
		pad := (ymax - ymin) * 0.05
		ymin, ymax = math.Max(0, ymin-pad), ymax+pad
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%d" fill="none" stroke="#888"/>`+"\n", x0, y1, x1-x0, panelHeight)
		fmt.Fprintf(&b, `<text x="%g" y="%g">%s (%s)</text>`+"\n", x0, y1-6, html.EscapeString(s.Name), html.EscapeString(s.Unit))
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`+"\n", x0-4, y1+10, num(ymax))
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`+"\n", x0-4, y0, num(ymin))
		fmt.Fprintf(&b, `<text x="%g" y="%g">%s s</text>`+"\n", x0, y0+14, num(tmin))
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s s</text>`+"\n", x1, y0+14, num(tmax))
		b.WriteString(`<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="`)
		for j := range min(len(t), len(s.Y)) {
			x := x0 + (t[j]-tmin)/math.Max(tmax-tmin, 1e-9)*(x1-x0)
			y := y0 - (s.Y[j]-ymin)/(ymax-ymin)*(y0-y1)
			fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
		}
		b.WriteString("\"/>\n")
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func bounds(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return 0, 1
	}
	lo, hi = xs[0], xs[0]
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// num prints an axis label with about four significant digits.
func num(x float64) string { return fmt.Sprintf("%.4g", x) }
