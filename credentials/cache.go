package credentials

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// ExpiryAdjuster is implemented by a provider that decides itself how far
// the cache's expiry window moves its credentials' expiry (the Refresher
// caps it at a tenth of their lifetime). d is negative: the window.
type ExpiryAdjuster interface {
	AdjustExpiresBy(c Credentials, d time.Duration) Credentials
}

// Cache keeps the last credentials of a provider in memory and hands them
// out until shortly before they expire, so that signing a request does not
// wait for anyone while valid credentials exist. Concurrent callers that
// find none share one fetch. It is safe for concurrent use; the fast path
// takes no lock and allocates nothing.
type Cache struct {
	base       Provider
	window     time.Duration
	jitterFrac float64
	clock      clock.Clock

	cur      atomic.Pointer[Credentials]
	mu       sync.Mutex
	inflight *fetchCall
}

// NewCache wraps base. Credentials that can expire are handed out until
// window before their expiry, less a random part of up to jitterFrac of
// the window (0–1), so that devices started together do not refresh
// together. When base is an ExpiryAdjuster it applies the window itself.
func NewCache(base Provider, window time.Duration, jitterFrac float64) *Cache {
	return &Cache{
		base:       base,
		window:     max(window, 0),
		jitterFrac: min(max(jitterFrac, 0), 1),
		clock:      clock.System{},
	}
}

// Retrieve returns the cached credentials while they are valid, and
// otherwise fetches new ones (shared with concurrent callers). When ctx
// ends first, the fetch goes on for the others and ctx's error is
// returned.
func (c *Cache) Retrieve(ctx context.Context) (Credentials, error) {
	if cur := c.cur.Load(); cur != nil && !cur.Expired(c.clock.Now()) {
		return *cur, nil
	}
	c.mu.Lock()
	call := c.inflight
	if call == nil {
		call = &fetchCall{done: make(chan struct{})}
		c.inflight = call
		go c.fetch(context.WithoutCancel(ctx), call)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.creds, call.err
	case <-ctx.Done():
		return Credentials{}, fmt.Errorf("credentials: retrieve abandoned: %w", ctx.Err())
	}
}

func (c *Cache) fetch(ctx context.Context, call *fetchCall) {
	defer close(call.done)
	defer func() {
		c.mu.Lock()
		c.inflight = nil
		c.mu.Unlock()
	}()
	// Someone may have stored fresh credentials since the caller looked.
	if cur := c.cur.Load(); cur != nil && !cur.Expired(c.clock.Now()) {
		call.creds = *cur
		return
	}
	creds, err := c.base.Retrieve(ctx)
	if err != nil {
		call.err = err
		return
	}
	if creds.CanExpire && c.window > 0 {
		jitter := time.Duration(rand.Float64() * c.jitterFrac * float64(c.window))
		d := -(c.window - jitter)
		if a, ok := c.base.(ExpiryAdjuster); ok {
			creds = a.AdjustExpiresBy(creds, d)
		} else {
			creds.Expires = creds.Expires.Add(d)
		}
	}
	if creds.HasKeys() {
		c.cur.Store(&creds)
	}
	call.creds = creds
}

// Invalidate forgets the cached credentials: the next Retrieve fetches.
func (c *Cache) Invalidate() { c.cur.Store(nil) }
