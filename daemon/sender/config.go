package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/internal/kvs"
)

// Store is what the sender needs from the ring buffer; *ring.Ring
// implements it. See package ring for the exact semantics.
type Store interface {
	Next(ctx context.Context, from ring.ID) (ring.ID, fragmenter.Fragment, error)
	FirstUnacked() (ring.ID, bool)
	NextID() ring.ID
	Ack(id ring.ID) error
	Range(from, to time.Time, fn func(ring.ID, fragmenter.Fragment) error) error
	Stats() ring.Stats
}

// recycler is implemented by a store that lends the memory of the
// fragments it returns (*ring.Ring): the sender hands a fragment back once
// its cluster is written, so reading the next one allocates nothing.
type recycler interface {
	Recycle(fragmenter.Fragment)
}

// streamer is implemented by a store that hands out a fragment's cluster
// in pieces (see ring.NextStream): the fragment holds the cluster's start
// and the body the rest, read as it is written to the connection, so the
// sender holds a small head per fragment rather than the whole fragment.
type streamer interface {
	NextStream(ctx context.Context, from ring.ID) (ring.ID, fragmenter.Fragment, *ring.Body, error)
}

// ackedReporter is implemented by a store that can say whether an id is
// acknowledged. With it the sender also skips fragments acknowledged out of
// order before a restart; without it only those acknowledged since Run
// started are skipped.
type ackedReporter interface {
	Acked(id ring.ID) bool
}

// Modes.
const (
	// ModeLive uploads everything as it is captured.
	ModeLive = "live"
	// ModeRecord keeps fragments in the ring and uploads only what
	// UploadRange asks for.
	ModeRecord = "record"
)

// Defaults for the tunables in Config.
const (
	DefaultRotateAfter      = 40 * time.Minute
	DefaultEndpointTTL      = 40 * time.Minute
	DefaultIdleClose        = 20 * time.Second
	DefaultAckTimeout       = 20 * time.Second
	DefaultPersistTimeout   = 30 * time.Second
	DefaultHeaderTimeout    = 15 * time.Second
	DefaultStallTimeout     = 15 * time.Second
	DefaultDrainTimeout     = 15 * time.Second
	DefaultOperatorBackoff  = 5 * time.Minute
	DefaultDialTimeout      = 10 * time.Second
	DefaultTLSTimeout       = 10 * time.Second
	DefaultCredentialMargin = 2 * time.Minute
	DefaultShutdownGrace    = time.Second
	DefaultOfflineRetry     = 3 * time.Second

	DefaultMaxLiveLag     = 10 * time.Second
	DefaultMaxAttempts    = 5
	DefaultSetAsideRetry  = 5 * time.Minute
	DefaultSkipBreaker    = 3
	DefaultStaleFragments = 2
	DefaultStaleMedia     = 15 * time.Second
	DefaultStaleWait      = 5 * time.Second
)

// Config configures a Sender. Stream, Region, Ring and Credentials are
// required; every duration left zero gets its Default.
type Config struct {
	Stream      string
	Region      string
	Ring        Store
	Credentials credentials.Provider
	// ControlEndpoint overrides the control-plane URL (config
	// kvs.endpoint), e.g. a local endpoint. Empty means the region's.
	ControlEndpoint string
	// CreateStream creates the stream when it does not exist, with
	// Retention as its data retention (rounded up to whole hours; 0 means
	// none, and fragments are then acknowledged on RECEIVED).
	CreateStream bool
	Retention    time.Duration
	// RateLimit caps upload bytes per second (config upload_rate_limit);
	// 0 means only the service quota applies. SetRateLimit changes it on
	// a running Sender.
	RateLimit int64
	// Mode is ModeLive (default) or ModeRecord. SetMode changes it on a
	// running Sender.
	Mode string
	// UploadOrder is OrderLiveFirst (default) or OrderInOrder (config
	// upload_order). Live-first needs a Store that also describes its
	// fragments (*ring.Ring does); others are uploaded in order.
	UploadOrder string
	// MaxLiveLag bounds how far live video may fall behind while a
	// backlog drains, as long as the link carries the live bitrate
	// (config max_live_lag). A backlog slice yields to waiting live video
	// after half of it; live video further behind than this is left to
	// the backlog so that the newest video goes first.
	MaxLiveLag time.Duration
	// MaxAttempts is how often a fragment is sent after retryable
	// refusals (5000, 5001, 4000, unknown codes) before it is set aside.
	MaxAttempts int
	// SetAsideRetry is the wait before a set-aside fragment is tried
	// again (doubling with each failure, up to an hour).
	SetAsideRetry time.Duration
	// SetAsideFile keeps the set-aside list across restarts; empty keeps
	// it in memory only.
	SetAsideFile string
	// SkipBreaker: after this many fragments in a row refused with the
	// same skip code (4001, 4002, 4006, 4009-4012), the sender stops
	// giving fragments up, keeps them and raises an alert, because the
	// cause is then not one bad fragment.
	SkipBreaker int
	// StaleFragments, StaleMedia and StaleWait detect a connection that
	// takes data without acknowledging it: when no acknowledgement came
	// for StaleWait while more than StaleFragments fragments or at least
	// StaleMedia of media were written since the last one, the connection
	// is dead.
	StaleFragments int
	StaleMedia     time.Duration
	StaleWait      time.Duration
	// Logger receives the sender's records; it should already carry the
	// stream's name (the pipeline's loggers do).
	Logger *slog.Logger

	// RotateAfter ends a connection at the next fragment boundary once it
	// is this old (the service ends it at kvs.MaxConnectionAge).
	RotateAfter time.Duration
	// EndpointTTL is how long a data endpoint is reused.
	EndpointTTL time.Duration
	// IdleClose ends the request body when no fragment was ready for this
	// long (must be below the service's kvs.IdleTimeout).
	IdleClose time.Duration
	// AckTimeout: a fragment must be RECEIVED within this time after the
	// bytes that follow it (next fragment or end of body) were sent.
	AckTimeout time.Duration
	// PersistTimeout: a RECEIVED fragment must be PERSISTED within this.
	PersistTimeout time.Duration
	// HeaderTimeout bounds the wait for the response status line.
	HeaderTimeout time.Duration
	// StallTimeout: a write that makes no progress for this long ends
	// the connection.
	StallTimeout time.Duration
	// DrainTimeout bounds the wait for the final acknowledgements after
	// the body was closed on purpose (rotation, idle, codec change).
	DrainTimeout time.Duration
	// ShutdownGrace: when Run's context ends during a connection, the
	// sender still sends fragments that reach the ring within this time
	// (the capture side flushes its open fragment as it stops), then ends
	// the body and waits up to DrainTimeout for their acknowledgements.
	ShutdownGrace time.Duration
	// OperatorBackoff is the wait after errors only a person can fix
	// (KMS key, deleted stream, permissions).
	OperatorBackoff time.Duration
	// CredentialMargin rotates a connection at a fragment boundary when
	// the credentials it was signed with expire within this margin.
	CredentialMargin time.Duration
	// OfflineRetry caps the wait after a failure that reached nobody (no
	// route, connection refused, name not resolved): such an attempt costs
	// the service nothing and no quota, and video made while the sender
	// sleeps on after the network is back falls behind live for nothing.
	OfflineRetry time.Duration
	// Backoff decides the wait before reconnecting after failures; nil
	// means backoff.New(500ms, 30s). Only its Delay is used, so one may
	// be shared.
	Backoff *backoff.Backoff
	// Clock is the time source for rate limiting and back-off; nil means
	// the system clock.
	Clock clock.Clock
	// DialTimeout and TLSTimeout bound connection set-up.
	DialTimeout, TLSTimeout time.Duration
	// NoEndOfFragment is a tuning option: it stops the sender from ending
	// a fragment with the end-of-fragment tag when nothing follows it yet.
	// The tag lets the service acknowledge a live fragment at once instead
	// of when the next one starts, so leaving it out adds up to one
	// fragment duration of acknowledgement latency; it saves 49 bytes per
	// fragment and suits endpoints or proxies that mishandle the tag.
	NoEndOfFragment bool
	// NoQuotaPacing stops the sender from pacing itself to the service's
	// per-stream quotas (kvs.MaxFragmentsPerSecond, kvs.MaxBytesPerSecond,
	// kvs.MaxConnectsPerSecond); RateLimit still applies. It is for
	// endpoints without those quotas, such as a local one with its quotas
	// lifted, to measure what the sender itself can do. Against the service
	// it only turns pacing into throttling errors.
	NoQuotaPacing bool
	// UserAgent is sent with PutMedia; empty means "kvscamd".
	UserAgent string

	// OnSend, when set, is called with a fragment's ring id just before its
	// first byte is written to a connection (again on every resend). It
	// runs on the upload path and must not block.
	OnSend func(id ring.ID)
	// OnReceived, when set, is called when the service reports a fragment
	// RECEIVED, with the time since the sender took it from the ring (the
	// upload latency an operator or a benchmark cares about). It runs on
	// the acknowledgement path and must not block.
	OnReceived func(id ring.ID, latency time.Duration)
}

// checkMode returns an error naming the allowed modes when mode is not one.
func checkMode(mode string) error {
	switch mode {
	case ModeLive, ModeRecord:
		return nil
	}
	return fmt.Errorf("mode %q: use %q or %q", mode, ModeLive, ModeRecord)
}

func (c *Config) setDefaults() error {
	var errs []error
	if err := kvs.CheckStreamName(c.Stream); err != nil {
		errs = append(errs, err)
	}
	if c.Region == "" {
		errs = append(errs, errors.New("region is empty: set region, e.g. \"eu-west-1\""))
	}
	if c.Ring == nil {
		errs = append(errs, errors.New("no ring buffer"))
	}
	if c.Credentials == nil {
		errs = append(errs, errors.New("no credentials provider: configure [credentials]"))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention %v is negative", c.Retention))
	}
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("upload_rate_limit %d is negative", c.RateLimit))
	}
	if c.Mode == "" {
		c.Mode = ModeLive
	}
	if err := checkMode(c.Mode); err != nil {
		errs = append(errs, err)
	}
	if c.UploadOrder == "" {
		c.UploadOrder = OrderLiveFirst
	}
	if err := checkOrder(c.UploadOrder); err != nil {
		errs = append(errs, err)
	}
	if c.MaxLiveLag < 0 {
		errs = append(errs, fmt.Errorf("max_live_lag %v is negative", c.MaxLiveLag))
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&c.MaxAttempts, DefaultMaxAttempts)
	defInt(&c.SkipBreaker, DefaultSkipBreaker)
	defInt(&c.StaleFragments, DefaultStaleFragments)
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RotateAfter, DefaultRotateAfter)
	def(&c.EndpointTTL, DefaultEndpointTTL)
	def(&c.IdleClose, DefaultIdleClose)
	def(&c.AckTimeout, DefaultAckTimeout)
	def(&c.PersistTimeout, DefaultPersistTimeout)
	def(&c.HeaderTimeout, DefaultHeaderTimeout)
	def(&c.StallTimeout, DefaultStallTimeout)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	def(&c.OperatorBackoff, DefaultOperatorBackoff)
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.TLSTimeout, DefaultTLSTimeout)
	def(&c.CredentialMargin, DefaultCredentialMargin)
	def(&c.ShutdownGrace, DefaultShutdownGrace)
	def(&c.OfflineRetry, DefaultOfflineRetry)
	def(&c.MaxLiveLag, DefaultMaxLiveLag)
	def(&c.SetAsideRetry, DefaultSetAsideRetry)
	def(&c.StaleMedia, DefaultStaleMedia)
	def(&c.StaleWait, DefaultStaleWait)
	if c.RotateAfter >= kvs.MaxConnectionAge {
		errs = append(errs, fmt.Errorf("rotate after %v: must be below the service's %v connection limit", c.RotateAfter, kvs.MaxConnectionAge))
	}
	if c.IdleClose >= kvs.IdleTimeout {
		errs = append(errs, fmt.Errorf("idle close %v: must be below the service's %v idle timeout", c.IdleClose, kvs.IdleTimeout))
	}
	if c.Backoff == nil {
		c.Backoff = backoff.New(500*time.Millisecond, 30*time.Second)
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.UserAgent == "" {
		c.UserAgent = "kvscamd"
	}
	if len(errs) > 0 {
		return fmt.Errorf("sender: config: %w", errors.Join(errs...))
	}
	return nil
}

// retentionHours converts Retention to the whole hours CreateStream takes.
func (c *Config) retentionHours() int32 {
	h := (c.Retention + time.Hour - 1) / time.Hour
	return int32(h)
}

var _ Store = (*ring.Ring)(nil)
