package sender

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Clock is the time source for rate limiting and back-off, so that tests
// can run them without real waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx ends, returning ctx.Err() then.
	Sleep(ctx context.Context, d time.Duration) error
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Backoff decides how long to wait before reconnect attempt n (1 for the
// first retry after a failure; it resets once a connection made progress).
type Backoff interface {
	Delay(n int) time.Duration
}

// ExpBackoff doubles the wait per attempt from Base up to Max and draws the
// actual wait uniformly from [d/2, d] ("equal jitter"), so that many
// devices that lost the network together do not reconnect together.
type ExpBackoff struct {
	Base, Max time.Duration
	mu        sync.Mutex
	rnd       *rand.Rand
}

// NewExpBackoff returns an exponential back-off with jitter.
func NewExpBackoff(base, max time.Duration) *ExpBackoff {
	return &ExpBackoff{Base: base, Max: max, rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// Delay implements Backoff.
func (b *ExpBackoff) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 1 {
		return d
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return d/2 + time.Duration(b.rnd.Int64N(int64(d/2)+1))
}
