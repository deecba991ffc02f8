package drivers

import (
	"context"
	"math/rand/v2"
	"time"
)

// HealthyRun is how long a source must have captured for its next failure
// to count as a fresh one: the back-off starts over from its minimum, so a
// camera that fails once a day comes back quickly.
const HealthyRun = time.Minute

// Backoff paces the restarts of a source that keeps failing: each wait is
// twice the previous one up to Max, drawn with jitter from its upper half,
// and back to Min after a run of at least HealthyRun. The zero value is
// not usable; set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	next     time.Duration
}

// Wait returns how long to wait before the next start, after a run that
// lasted ran.
func (b *Backoff) Wait(ran time.Duration) time.Duration {
	if b.next == 0 || ran >= HealthyRun {
		b.next = b.Min
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d, or less if ctx ends first; it reports whether the whole
// wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
