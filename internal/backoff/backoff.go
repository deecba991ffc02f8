// Package backoff spaces out retries: each wait doubles from a minimum up
// to a maximum, randomised so that many cameras that failed together (a
// network outage, a service restart) do not all retry at the same instant.
//
// Waiting itself is clock.Sleep, so that tests can drive retries with a
// fake clock.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter is how a wait is drawn from its bound d.
type Jitter int

const (
	// Equal draws from [d/2, d]: spread out, yet never much shorter than
	// the bound, so a failing peer is not hit faster than intended.
	Equal Jitter = iota
	// Full draws from [0, d]: the widest spread, for many clients of one
	// service where spreading matters more than a minimum wait.
	Full
	// None waits exactly d.
	None
)

// Backoff computes retry waits. Min and Max bound the doubling bound; the
// zero Jitter is Equal. Delay is safe for concurrent use; Next and Reset,
// which count attempts, are for one retry loop at a time.
type Backoff struct {
	Min, Max time.Duration
	Jitter   Jitter
	n        int // failed attempts since the last Reset
}

// New returns an Equal-jitter back-off from min to max.
func New(min, max time.Duration) *Backoff { return &Backoff{Min: min, Max: max} }

// Delay returns the wait before retry n, 1 for the first retry after a
// failure: the bound is Min doubled n−1 times, capped at Max (and never
// below Min), and the wait drawn from it by Jitter.
func (b *Backoff) Delay(n int) time.Duration {
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = max(min(d, b.Max), b.Min)
	if d <= 1 {
		return d
	}
	switch b.Jitter {
	case Full:
		return rand.N(d + 1)
	case None:
		return d
	default:
		return d/2 + rand.N(d/2+1)
	}
}

// Next counts a failed attempt and returns the wait before retrying it.
func (b *Backoff) Next() time.Duration {
	b.n++
	return b.Delay(b.n)
}

// Reset starts over from Min, after an attempt succeeded (or ran long
// enough to count as healthy).
func (b *Backoff) Reset() { b.n = 0 }

// Attempts returns the failed attempts counted since the last Reset.
func (b *Backoff) Attempts() int { return b.n }
