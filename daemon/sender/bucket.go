package sender

import (
	"context"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// bucket is a token bucket: rate tokens per second, at most burst saved.
// It paces the upload to the service quotas and to upload_rate_limit.
type bucket struct {
	clock  clock.Clock
	rate   float64
	burst  float64
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(clk clock.Clock, rate, burst float64) *bucket {
	return &bucket{clock: clk, rate: rate, burst: burst, tokens: burst, last: clk.Now()}
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
	return clock.Sleep(ctx, b.clock, time.Duration(deficit/b.rate*float64(time.Second)))
}
