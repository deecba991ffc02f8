package credentials

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/clock"
)

// Refresh planning. Credentials are refreshed when half (plus up to a
// tenth, as jitter) of their lifetime has passed, which leaves the other
// half to ride out an unreachable endpoint while the old ones still work.
const (
	refreshAtFrac     = 0.5
	refreshJitterFrac = 0.1
	// minRemaining is the least validity credentials must have left to be
	// handed out (capped at a tenth of their lifetime, for short-lived test
	// credentials): a request signed with them must still arrive in time.
	minRemaining = 30 * time.Second
	// minInvalidateAge protects the endpoint from a caller that invalidates
	// in a tight loop: credentials younger than this are not thrown away,
	// because fetching again so soon would not give better ones.
	minInvalidateAge = 2 * time.Second
	// backgroundRetryMax caps the wait between failed background refreshes.
	backgroundRetryMax = time.Minute
)

var errNoProgress = errors.New("credentials: refresh returned the credentials already held")

// held is the latest credentials and when to replace them.
type held struct {
	creds       Credentials
	fetched     time.Time
	refreshAt   time.Time // zero: never (credentials do not expire)
	usableUntil time.Time // zero: forever
}

func (h *held) usable(now time.Time) bool {
	return h != nil && (h.usableUntil.IsZero() || now.Before(h.usableUntil))
}

func (h *held) due(now time.Time) bool {
	return !h.refreshAt.IsZero() && !now.Before(h.refreshAt)
}

// fetchCall is one network fetch shared by everyone who needs it.
type fetchCall struct {
	done  chan struct{}
	creds Credentials
	err   error
}

// Refresher keeps current credentials from a base provider in memory and,
// while Run is active, replaces them in the background well before they
// expire, so that Retrieve on the upload path returns at once. It is an
// Provider itself and safe for concurrent use.
//
// Without Run, Retrieve refreshes when due and, if that fails, keeps
// handing out the old credentials for as long as they are valid.
//
// Goroutines: Run's loop, plus one goroutine per network fetch, bounded by
// the base provider's own timeouts; concurrent callers share that fetch.
type Refresher struct {
	base  Provider
	name  string // the configured source, for logs and status
	log   *slog.Logger
	clock clock.Clock

	retryBase time.Duration

	mu       sync.Mutex
	cur      *held
	inflight *fetchCall
	lastErr  string
	lastFail time.Time

	kick      chan struct{} // Invalidate wakes Run
	running   atomic.Int32
	refreshes atomic.Uint64
	failures  atomic.Uint64
}

// NewRefresher wraps base. name is the source for logs ("iot", ...).
func NewRefresher(base Provider, name string, retryBase time.Duration, opts ...Option) *Refresher {
	o := buildOptions(Config{}, opts)
	if retryBase <= 0 {
		retryBase = DefaultRetryBase
	}
	return &Refresher{
		base:      base,
		name:      name,
		log:       o.log,
		clock:     o.clock,
		retryBase: retryBase,
		kick:      make(chan struct{}, 1),
	}
}

// Retrieve implements Provider. It only waits for the
// network when it holds no usable credentials.
func (r *Refresher) Retrieve(ctx context.Context) (Credentials, error) {
	now := r.clock.Now()
	r.mu.Lock()
	h := r.cur
	r.mu.Unlock()
	if h.usable(now) {
		if !h.due(now) || r.running.Load() > 0 {
			return h.creds, nil
		}
		creds, err := r.refresh(ctx)
		if err != nil {
			// Keep uploading with what still works; the error is logged.
			return h.creds, nil
		}
		return creds, nil
	}
	return r.refresh(ctx)
}

// Run refreshes ahead of expiry until ctx ends, retrying failures with
// back-off. It returns nil on cancellation.
func (r *Refresher) Run(ctx context.Context) error {
	r.running.Add(1)
	defer r.running.Add(-1)
	retries := backoff.Backoff{Min: r.retryBase, Max: backgroundRetryMax}
	var retryAt time.Time
	for {
		now := r.clock.Now()
		r.mu.Lock()
		h := r.cur
		r.mu.Unlock()
		var wait time.Duration
		switch {
		case !retryAt.IsZero() && now.Before(retryAt):
			wait = retryAt.Sub(now)
		case h == nil || !h.usable(now) || h.due(now):
			wait = 0
		case h.refreshAt.IsZero():
			wait = -1 // nothing to do until invalidated
		default:
			wait = h.refreshAt.Sub(now)
		}
		if wait != 0 {
			var due <-chan time.Time // nil, never ready, when wait < 0
			if wait > 0 {
				due = r.clock.After(wait)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-r.kick:
				retryAt = time.Time{} // invalidated: fetch now, back-off or not
			case <-due:
			}
			continue
		}
		creds, err := r.refresh(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && h != nil && h.creds.CanExpire && creds.AccessKeyID == h.creds.AccessKeyID && !creds.Expires.After(h.creds.Expires) {
			// The source handed back what we had (it caches on its own):
			// asking again at once would spin until the old ones expire.
			err = errNoProgress
		}
		if err != nil {
			retryAt = r.clock.Now().Add(retries.Next())
			continue
		}
		retries.Reset()
		retryAt = time.Time{}
	}
}

// Invalidate drops the held credentials (KVS said they expired or are
// invalid) unless they were fetched moments ago, and wakes Run.
func (r *Refresher) Invalidate() {
	r.mu.Lock()
	if h := r.cur; h != nil && r.clock.Now().Sub(h.fetched) < minInvalidateAge {
		r.mu.Unlock()
		r.log.Warn("credentials: invalidation ignored, credentials were fetched moments ago", "source", r.name)
		return
	}
	r.cur = nil
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// refresh fetches once, sharing the fetch with concurrent callers. The
// fetch itself is not cancelled with ctx (others may wait for it); the
// base provider bounds it with its own timeouts.
func (r *Refresher) refresh(ctx context.Context) (Credentials, error) {
	r.mu.Lock()
	c := r.inflight
	if c == nil {
		c = &fetchCall{done: make(chan struct{})}
		r.inflight = c
		go r.doFetch(context.WithoutCancel(ctx), c)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.creds, c.err
	case <-ctx.Done():
		return Credentials{}, ctx.Err()
	}
}

func (r *Refresher) doFetch(ctx context.Context, c *fetchCall) {
	creds, err := r.base.Retrieve(ctx)
	now := r.clock.Now()
	r.mu.Lock()
	if err == nil {
		r.cur = plan(creds, now)
		r.refreshes.Add(1)
	} else {
		r.lastErr, r.lastFail = err.Error(), now
		r.failures.Add(1)
	}
	r.inflight = nil
	c.creds, c.err = creds, err
	r.mu.Unlock()
	close(c.done)
	if err != nil {
		r.log.Warn("credentials: refresh failed", "source", r.name, "err", err.Error())
		return
	}
	r.log.Info("credentials: refreshed", logAttrs(creds)...)
}

// plan decides when creds fetched at now are refreshed and how long they
// may be handed out.
func plan(creds Credentials, now time.Time) *held {
	h := &held{creds: creds, fetched: now}
	if !creds.CanExpire {
		return h
	}
	life := creds.Expires.Sub(now)
	frac := refreshAtFrac + refreshJitterFrac*rand.Float64()
	h.refreshAt = now.Add(time.Duration(float64(life) * frac))
	h.usableUntil = creds.Expires.Add(-min(minRemaining, life/10))
	return h
}

// AdjustExpiresBy implements ExpiryAdjuster: the cache's expiry window is
// capped at a tenth of the remaining lifetime. A five-minute window would
// otherwise swallow short-lived credentials, and credentials kept through
// an outage near their end stay cached.
func (r *Refresher) AdjustExpiresBy(c Credentials, d time.Duration) Credentials {
	if !c.CanExpire {
		return c
	}
	window := max(-d, 0)
	window = min(window, c.Expires.Sub(r.clock.Now())/10)
	if window > 0 {
		c.Expires = c.Expires.Add(-window)
	}
	return c
}

// Status describes the held credentials without secrets.
type Status struct {
	Source      string    `json:"source"`
	AccessKey   string    `json:"access_key"` // redacted
	CanExpire   bool      `json:"can_expire"`
	Expires     time.Time `json:"expires,omitzero"`
	Fetched     time.Time `json:"fetched,omitzero"`
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	Refreshes   uint64    `json:"refreshes"`
	Failures    uint64    `json:"failures"`
	LastError   string    `json:"last_error,omitempty"`
	LastFailure time.Time `json:"last_failure,omitzero"`
}

// Status reports the current state for `kvscamd status` and telemetry.
func (r *Refresher) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{
		Source:      r.name,
		AccessKey:   RedactAccessKeyID(""),
		Refreshes:   r.refreshes.Load(),
		Failures:    r.failures.Load(),
		LastError:   r.lastErr,
		LastFailure: r.lastFail,
	}
	if h := r.cur; h != nil {
		s.AccessKey = RedactAccessKeyID(h.creds.AccessKeyID)
		s.CanExpire = h.creds.CanExpire
		if h.creds.CanExpire {
			s.Expires = h.creds.Expires
		}
		s.Fetched = h.fetched
		s.NextRefresh = h.refreshAt
	}
	return s
}
