package sender

import (
	"context"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// bucket is a token bucket: rate tokens per second, at most burst saved.
// It paces the upload to the service quotas and to upload_rate_limit. A
// rate of 0 lets everything through. The rate can change while the bucket
// is in use (SetRateLimit); a caller waiting for tokens then re-computes
// its wait at the new rate.
type bucket struct {
	clock  clock.Clock
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	// changed is cancelled, and replaced, when the rate changes, to wake
	// the callers sleeping in wait.
	changed context.Context
	cancel  context.CancelFunc
}

func newBucket(clk clock.Clock, rate, burst float64) *bucket {
	b := &bucket{clock: clk, rate: rate, burst: burst, tokens: burst, last: clk.Now()}
	b.changed, b.cancel = context.WithCancel(context.Background())
	return b
}

// refill adds the tokens earned since the last call. b.mu is held.
func (b *bucket) refill(now time.Time) {
	if b.rate > 0 {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

// setRate changes the rate and burst from now on. Tokens earned so far
// are kept up to the new burst, and a debt stays a debt, so lowering the
// rate in the middle of a large write cannot be used to skip the wait.
func (b *bucket) setRate(rate, burst float64) {
	b.mu.Lock()
	b.refill(b.clock.Now())
	if b.rate <= 0 {
		// Nothing was counted while unlimited: start from a full bucket.
		b.tokens = burst
	}
	b.rate, b.burst = rate, burst
	b.tokens = min(b.tokens, burst)
	cancel := b.cancel
	b.changed, b.cancel = context.WithCancel(context.Background())
	b.mu.Unlock()
	cancel()
}

// wait takes n tokens, sleeping until they are available. n larger than
// the burst is allowed and simply waits longer (the debt is paid off
// before the next caller proceeds).
func (b *bucket) wait(ctx context.Context, n float64) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	if b.rate <= 0 {
		b.mu.Unlock()
		return nil
	}
	b.refill(b.clock.Now())
	b.tokens -= n
	b.mu.Unlock()
	for {
		b.mu.Lock()
		if b.rate <= 0 {
			b.mu.Unlock()
			return nil
		}
		b.refill(b.clock.Now())
		deficit, rate, changed := -b.tokens, b.rate, b.changed
		b.mu.Unlock()
		if deficit <= 0 {
			return nil
		}
		sctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(changed, cancel)
		err := clock.Sleep(sctx, b.clock, time.Duration(deficit/rate*float64(time.Second)))
		stop()
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case changed.Err() != nil:
			continue // the rate changed: wait for the rest at the new one
		}
		return err
	}
}
