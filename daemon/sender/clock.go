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

// bucket is a token bucket: rate tokens per second, at most burst saved.
// It paces the upload to the service quotas and to upload_rate_limit.
type bucket struct {
	clock  Clock
	rate   float64
	burst  float64
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(clock Clock, rate, burst float64) *bucket {
	return &bucket{clock: clock, rate: rate, burst: burst, tokens: burst, last: clock.Now()}
}

// wait takes n tokens, sleeping until they are available. n larger than
// the burst is allowed and simply waits longer (the debt is paid off
// before the next caller proceeds).
func (b *bucket) wait(ctx context.Context, n float64) error {
	if b == nil || b.rate <= 0 {
		return nil
	}
	b.mu.Lock()
	now := b.clock.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= n
	deficit := -b.tokens
	b.mu.Unlock()
	if deficit <= 0 {
		return nil
	}
	return b.clock.Sleep(ctx, time.Duration(deficit/b.rate*float64(time.Second)))
}
