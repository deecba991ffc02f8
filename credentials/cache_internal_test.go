package credentials

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// gatedProvider hands out numbered credentials expiring after life; while
// gate is set, Retrieve waits for it to be closed.
type gatedProvider struct {
	clk   clock.Clock
	life  time.Duration
	calls atomic.Int32
	gate  chan struct{}
}

func (p *gatedProvider) Retrieve(context.Context) (Credentials, error) {
	n := p.calls.Add(1)
	if p.gate != nil {
		<-p.gate
	}
	return Credentials{AccessKeyID: "AKIA" + string(rune('A'+n)), SecretAccessKey: "s",
		CanExpire: p.life > 0, Expires: p.clk.Now().Add(p.life)}, nil
}

func newTestCache(base Provider, clk clock.Clock, window time.Duration, jitter float64) *Cache {
	c := NewCache(base, window, jitter)
	c.clock = clk
	return c
}

func TestCacheWindow(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	base := &gatedProvider{clk: clk, life: time.Hour}
	c := newTestCache(base, clk, 5*time.Minute, 0)
	a, err := c.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(55 * time.Minute); !a.Expires.Equal(want) {
		t.Fatalf("expires %v, want the window taken off: %v", a.Expires, want)
	}
	clk.Advance(54 * time.Minute)
	if b, _ := c.Retrieve(context.Background()); b.AccessKeyID != a.AccessKeyID || base.calls.Load() != 1 {
		t.Fatalf("fetched again inside the validity (calls %d)", base.calls.Load())
	}
	clk.Advance(time.Minute) // at the adjusted expiry
	if b, _ := c.Retrieve(context.Background()); b.AccessKeyID == a.AccessKeyID || base.calls.Load() != 2 {
		t.Fatalf("not fetched at the adjusted expiry (calls %d)", base.calls.Load())
	}
	c.Invalidate()
	if _, _ = c.Retrieve(context.Background()); base.calls.Load() != 3 {
		t.Fatalf("Invalidate did not force a fetch (calls %d)", base.calls.Load())
	}

	// With jitter the window lies between (1-frac) and all of it.
	j := newTestCache(&gatedProvider{clk: clk, life: time.Hour}, clk, 10*time.Minute, 0.5)
	for range 20 {
		j.Invalidate()
		x, _ := j.Retrieve(context.Background())
		if left := x.Expires.Sub(clk.Now()); left < 50*time.Minute || left > 55*time.Minute {
			t.Fatalf("jittered expiry %v from now, want 50–55 min", left)
		}
	}

	// Credentials that do not expire stay as they are, forever.
	s := newTestCache(&gatedProvider{clk: clk}, clk, 5*time.Minute, 0.5)
	x, _ := s.Retrieve(context.Background())
	clk.Advance(1000 * time.Hour)
	if y, _ := s.Retrieve(context.Background()); x.CanExpire || y.AccessKeyID != x.AccessKeyID {
		t.Fatal("non-expiring credentials were replaced")
	}
}

// An ExpiryAdjuster base decides the window itself.
type adjusting struct{ gatedProvider }

func (a *adjusting) AdjustExpiresBy(c Credentials, d time.Duration) Credentials {
	c.Expires = c.Expires.Add(d / 5)
	return c
}

func TestCacheAdjuster(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newTestCache(&adjusting{gatedProvider{clk: clk, life: time.Hour}}, clk, 5*time.Minute, 0)
	x, _ := c.Retrieve(context.Background())
	if want := clk.Now().Add(59 * time.Minute); !x.Expires.Equal(want) {
		t.Fatalf("expires %v, want the adjuster's %v", x.Expires, want)
	}
}

// TestCacheSharesFetch: callers that find nothing valid share one fetch; a
// caller whose context ends stops waiting without cancelling it.
func TestCacheSharesFetch(t *testing.T) {
	gate := make(chan struct{})
	base := &gatedProvider{clk: clock.System{}, life: time.Hour, gate: gate}
	c := NewCache(base, time.Minute, 0)

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := c.Retrieve(ctx)
		cancelled <- err
	}()
	var wg sync.WaitGroup
	got := make([]Credentials, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = c.Retrieve(context.Background())
		}()
	}
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(gate)
	wg.Wait()
	for _, g := range got {
		if g.AccessKeyID != got[0].AccessKeyID || !g.HasKeys() {
			t.Fatalf("callers got different credentials: %s, %s", g, got[0])
		}
	}
	// Callers that arrived while the first fetch was under way joined it;
	// any that came after it ended were served from memory.
	if n := base.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestCacheError(t *testing.T) {
	boom := errors.New("boom")
	c := NewCache(ProviderFunc(func(context.Context) (Credentials, error) { return Credentials{}, boom }), time.Minute, 0)
	if _, err := c.Retrieve(context.Background()); !errors.Is(err, boom) || err.Error() != "boom" {
		t.Fatalf("Retrieve = %v, want the source's error unchanged", err)
	}
}

func BenchmarkCacheRetrieve(b *testing.B) {
	c := NewCache(StaticProvider{Value: Credentials{AccessKeyID: "A", SecretAccessKey: "s"}}, time.Minute, 0.5)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Retrieve(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
