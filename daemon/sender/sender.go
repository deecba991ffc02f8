package sender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/clock"
)

// Sender uploads one stream. Create it with New and start it with Run.
type Sender struct {
	cfg     Config
	log     *slog.Logger
	creds   aws.CredentialsProvider
	signer  *v4.Signer
	http    *http.Client
	ctrl    *control
	frags   *bucket // fragments per second
	bytes   *bucket // bytes per second
	connect *bucket // PutMedia calls per second

	mu sync.Mutex
	// acked holds ids acknowledged (or given up) while this process runs
	// that lie above the ring's first unacknowledged id. The ring's Next
	// also returns acknowledged fragments, so without this set a reconnect
	// after an out-of-order acknowledgement would send a PERSISTED
	// fragment again.
	acked map[ring.ID]struct{}
	// want holds the ids UploadRange asked for (record mode), sorted.
	want     []ring.ID
	wantWake chan struct{}
	alert    string // operator-action message; "" when none
	state    string
	lastErr  string
	lastErrT time.Time
	latency  []time.Duration // fragment ready -> RECEIVED, for benchmarks

	// testHookSend, when set, is called before a fragment's first byte
	// is written.
	testHookSend func(ring.ID)

	connections, sent, acks, skipped, received, bytesSent atomic.Uint64
	running                                               atomic.Bool
}

// New validates cfg and returns a Sender. It does no I/O.
func New(cfg Config) (*Sender, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	creds := cfg.Credentials
	_, isCache := creds.(*aws.CredentialsCache)
	_, canInvalidate := creds.(interface{ Invalidate() })
	if !isCache && !canInvalidate {
		// Providers with Invalidate cache on their own (the daemon's
		// credentials.Provider does). A cache refreshes ahead of expiry, so opening a connection
		// rarely waits for a refresh, and an open stream never does:
		// credentials are only needed to sign a new request.
		creds = aws.NewCredentialsCache(creds, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = cfg.CredentialMargin + time.Minute
			o.ExpiryWindowJitterFrac = 0.2
		})
	}
	s := &Sender{
		cfg:      cfg,
		log:      cfg.Logger,
		creds:    creds,
		signer:   v4.NewSigner(),
		http:     &http.Client{Transport: newTransport(&cfg)},
		acked:    map[ring.ID]struct{}{},
		wantWake: make(chan struct{}, 1),
		state:    "starting",
	}
	s.ctrl = newControl(&s.cfg, creds, &http.Client{Transport: newTransport(&cfg), Timeout: controlCallTimeout})
	s.frags = newBucket(cfg.Clock, MaxFragmentsPerSecond, 1)
	rate := int64(MaxBytesPerSecond)
	if cfg.RateLimit > 0 && cfg.RateLimit < rate {
		rate = cfg.RateLimit
	}
	s.bytes = newBucket(cfg.Clock, float64(rate), float64(max(rate/10, chunkSize)))
	s.connect = newBucket(cfg.Clock, MaxConnectsPerSecond, 1)
	return s, nil
}

// sendBufferSize is the socket send buffer of PutMedia connections (the
// kernel doubles it). 512 KiB still allows about 10 MB/s at 100 ms
// round-trip time.
const sendBufferSize = 512 << 10

// newTransport returns a dedicated HTTP/1.1 transport: PutMedia relies on
// one long chunked request per connection, and an HTTP/2 upgrade would
// change how the body is framed.
func newTransport(cfg *Config) *http.Transport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 15 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			// A bounded send buffer keeps "written" close to "sent",
			// which keeps the acknowledgement time-outs honest on slow
			// links, and limits what a dead connection swallows.
			_ = tc.SetWriteBuffer(sendBufferSize)
		}
		return c, err
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		TLSHandshakeTimeout:   cfg.TLSTimeout,
		ResponseHeaderTimeout: cfg.HeaderTimeout, // applies to control-plane calls; PutMedia has its own watchdog
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       60 * time.Second,
		ExpectContinueTimeout: 0,
	}
}

// Stats is a snapshot of the sender's counters and state.
type Stats struct {
	// State is a one-line description: "streaming", "waiting for data",
	// "backing off: …", "operator action needed: …".
	State       string
	Connections uint64 // PutMedia requests opened
	Sent        uint64 // fragments whose last byte was written
	Received    uint64 // RECEIVED acknowledgements
	Acked       uint64 // fragments acknowledged in the ring as stored
	Skipped     uint64 // fragments given up because the service refused them
	Bytes       uint64 // body bytes written (headers and clusters)
	// Alert is set while a failure needs a person (KMS, deleted stream,
	// permissions, clock); data is kept meanwhile.
	Alert         string
	LastError     string
	LastErrorTime time.Time
	// OldestUnacked is the timecode of the first fragment not yet in the
	// cloud, zero when everything is; OldestUnackedAge is its age.
	OldestUnacked    time.Time
	OldestUnackedAge time.Duration
}

// Stats returns a snapshot; safe to call at any time.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		State:         s.state,
		Alert:         s.alert,
		LastError:     s.lastErr,
		LastErrorTime: s.lastErrT,
	}
	s.mu.Unlock()
	st.Connections = s.connections.Load()
	st.Sent = s.sent.Load()
	st.Received = s.received.Load()
	st.Acked = s.acks.Load()
	st.Skipped = s.skipped.Load()
	st.Bytes = s.bytesSent.Load()
	if t, ok := s.oldestUnacked(); ok {
		st.OldestUnacked = t
		st.OldestUnackedAge = s.cfg.Clock.Now().Sub(t)
	}
	return st
}

func (s *Sender) oldestUnacked() (time.Time, bool) {
	t := s.cfg.Ring.Stats().OldestUnacked
	return t, !t.IsZero()
}

// Latencies returns the fragment-ready to RECEIVED latencies observed so
// far (at most latencyKeep of the most recent), for benchmarks and status.
func (s *Sender) Latencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.latency...)
}

const latencyKeep = 4096

// alertAfterAttempts consecutive failed connections raise an alert even
// for failures that are normally retried quietly.
const alertAfterAttempts = 10

func (s *Sender) setState(format string, args ...any) {
	st := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

func (s *Sender) setError(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.lastErrT = s.cfg.Clock.Now()
	s.mu.Unlock()
}

func (s *Sender) setAlert(msg string) {
	s.mu.Lock()
	s.alert = msg
	s.mu.Unlock()
}

// markAcked records that id is in the cloud or given up.
func (s *Sender) markAcked(id ring.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked[id] = struct{}{}
	if i := sort.Search(len(s.want), func(i int) bool { return s.want[i] >= id }); i < len(s.want) && s.want[i] == id {
		s.want = append(s.want[:i], s.want[i+1:]...)
	}
}

func (s *Sender) isAcked(id ring.ID) bool {
	s.mu.Lock()
	_, ok := s.acked[id]
	s.mu.Unlock()
	if !ok {
		if r, can := s.cfg.Ring.(ackedReporter); can {
			ok = r.Acked(id)
		}
	}
	return ok
}

// resumePoint is where a new connection starts: the first fragment not
// acknowledged. Entries of the acked set below it are no longer needed.
func (s *Sender) resumePoint() ring.ID {
	from, ok := s.cfg.Ring.FirstUnacked()
	if !ok {
		from = s.cfg.Ring.NextID()
	}
	s.mu.Lock()
	for id := range s.acked {
		if id < from {
			delete(s.acked, id)
		}
	}
	s.mu.Unlock()
	return from
}

// UploadRange asks for the fragments overlapping [from, to) to be
// uploaded (zero times are unbounded). In record mode this is the only way
// anything is uploaded; in live mode everything is uploaded anyway and the
// call only validates. Fragments already acknowledged are not sent again.
func (s *Sender) UploadRange(from, to time.Time) (int, error) {
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return 0, fmt.Errorf("sender: upload range %s..%s: the end must be after the start", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	var ids []ring.ID
	err := s.cfg.Ring.Range(from, to, func(id ring.ID, _ fragmenter.Fragment) error {
		if !s.isAcked(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sender: upload range: %w", err)
	}
	if s.cfg.Mode != ModeRecord {
		return len(ids), nil
	}
	s.mu.Lock()
	set := make(map[ring.ID]struct{}, len(s.want)+len(ids))
	for _, id := range s.want {
		set[id] = struct{}{}
	}
	for _, id := range ids {
		set[id] = struct{}{}
	}
	s.want = s.want[:0]
	for id := range set {
		s.want = append(s.want, id)
	}
	sort.Slice(s.want, func(i, j int) bool { return s.want[i] < s.want[j] })
	s.mu.Unlock()
	select {
	case s.wantWake <- struct{}{}:
	default:
	}
	s.log.Info("upload requested", "from", from, "to", to, "fragments", len(ids))
	return len(ids), nil
}

// item is a fragment taken from the ring for sending.
type item struct {
	id    ring.ID
	f     fragmenter.Fragment
	ready time.Time // when the sender got it from the ring
}

// nextToSend returns the first fragment at or after from that still has
// to be sent, blocking until there is one or ctx ends.
func (s *Sender) nextToSend(ctx context.Context, from ring.ID) (item, error) {
	for {
		if s.cfg.Mode == ModeRecord {
			var ok bool
			from, ok = s.nextWanted(from)
			if !ok {
				select {
				case <-ctx.Done():
					return item{}, ctx.Err()
				case <-s.wantWake:
					continue
				}
			}
		}
		id, f, err := s.cfg.Ring.Next(ctx, from)
		if err != nil {
			return item{}, err
		}
		if s.isAcked(id) {
			from = id + 1
			continue
		}
		if s.cfg.Mode == ModeRecord && id != from {
			// The wanted fragment was evicted before it could be sent.
			s.log.Warn("requested fragment no longer in the ring", "id", from)
			s.markAcked(from)
			continue
		}
		return item{id: id, f: f, ready: time.Now()}, nil
	}
}

// moreReady reports whether a fragment at or after from is already in the
// ring (or, in record mode, requested), so the writer will not wait.
func (s *Sender) moreReady(from ring.ID) bool {
	if s.cfg.Mode == ModeRecord {
		_, ok := s.nextWanted(from)
		return ok
	}
	return s.cfg.Ring.NextID() > from
}

func (s *Sender) nextWanted(from ring.ID) (ring.ID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.want), func(i int) bool { return s.want[i] >= from })
	if i == len(s.want) {
		return 0, false
	}
	return s.want[i], true
}

// Run uploads until ctx ends (returning nil) or the ring is closed.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("sender: Run called twice")
	}
	defer s.running.Store(false)
	attempt := 0
	authRetried := false
	for {
		if ctx.Err() != nil {
			s.setState("stopped")
			return nil
		}
		var delay time.Duration
		retention, err := s.ctrl.ensure(ctx)
		if err == nil {
			from := s.resumePoint()
			if s.cfg.Mode == ModeRecord {
				from = 0
			}
			s.setState("waiting for data")
			var it item
			it, err = s.nextToSend(ctx, from)
			switch {
			case ctx.Err() != nil:
				continue
			case errors.Is(err, ring.ErrClosed):
				return fmt.Errorf("sender %s: ring closed while uploading", s.cfg.Stream)
			case err != nil:
				err = fmt.Errorf("sender %s: read ring: %w", s.cfg.Stream, err)
			default:
				if err = s.connect.wait(ctx, 1); err != nil {
					continue
				}
				var progress bool
				progress, err = s.connection(ctx, it, retention)
				if progress {
					attempt = 0
					authRetried = false
					s.setAlert("")
				}
			}
		}
		if ctx.Err() != nil {
			continue
		}
		class := classOf(err)
		if err != nil && class != ClassGraceful {
			attempt++
			s.setError(err)
		}
		switch class {
		case ClassGraceful:
			continue
		case ClassSkip:
			// The offending fragment is given up; go on at once.
			s.log.Warn("fragment refused by the service and skipped", "err", err)
			continue
		case ClassAuth:
			if inv, ok := s.creds.(interface{ Invalidate() }); ok {
				inv.Invalidate()
			}
			s.log.Warn("credentials expired; refreshing", "err", err)
			if !authRetried {
				authRetried = true
				continue
			}
			delay = s.cfg.Backoff.Delay(attempt)
		case ClassOperator:
			s.setAlert(err.Error())
			s.log.Error("upload needs operator action; keeping data", "err", err, "retry_in", s.cfg.OperatorBackoff)
			delay = s.cfg.OperatorBackoff
			s.ctrl.forgetStream()
		case ClassEndpoint:
			s.ctrl.forgetEndpoint()
			delay = s.cfg.Backoff.Delay(attempt)
		case ClassStream:
			s.ctrl.forgetStream()
			delay = s.cfg.Backoff.Delay(attempt)
		case ClassThrottle:
			// A quota, not a wrong endpoint: keep the cached one, or the
			// retry would spend a control-plane call as well.
			delay = s.cfg.Backoff.Delay(attempt)
		default:
			s.ctrl.forgetEndpoint()
			delay = s.cfg.Backoff.Delay(attempt)
		}
		if attempt == alertAfterAttempts && class != ClassOperator {
			// Retrying is right for these failures, but when they go on
			// this long someone should look (e.g. 5001 on every attempt).
			s.setAlert(fmt.Sprintf("uploads failing for %d attempts in a row: %v", attempt, err))
			s.log.Error("uploads keep failing; still retrying and keeping data", "attempts", attempt, "err", err)
		}
		if class != ClassOperator {
			s.log.Warn("upload interrupted; reconnecting", "class", class.String(), "attempt", attempt, "retry_in", delay, "err", err)
			s.setState("backing off %v after %s error: %v", delay.Round(time.Millisecond), class, err)
		} else {
			s.setState("operator action needed: %v", err)
		}
		_ = clock.Sleep(ctx, s.cfg.Clock, delay)
	}
}
