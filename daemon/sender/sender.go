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

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/internal/kvs"
)

// Sender uploads one stream. Create it with New and start it with Run.
type Sender struct {
	cfg     Config
	log     *slog.Logger
	creds   credentials.Provider
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
	mode     *modeState
	// rateLimit is the upload_rate_limit in force (0: quota only).
	rateLimit int64
	// lastAck is when a fragment was last acknowledged as stored;
	// newestAcked and newestAckedDur are the timecode (epoch ms, 0 for
	// none) and duration of the newest one acknowledged since New.
	lastAck        time.Time
	newestAcked    int64
	newestAckedDur time.Duration

	// meta is Config.Ring's fragment index when it has one (live-first
	// needs it).
	meta metaStore
	// aside holds the fragments set aside (see setaside.go) and attempts
	// the retryable failures of the others, by ring id.
	aside         map[ring.ID]*aside
	attempts      map[ring.ID]int
	setAsideTotal uint64
	// liveFrom is the live cursor: ids below it not yet stored are the
	// backlog. liveReadySince is when a backlog slice first saw live
	// video waiting.
	liveFrom       ring.ID
	liveReadySince time.Time
	// turn is what the next connection carries after a live connection
	// ended to give the backlog (or a set-aside retry) its slice, when
	// turnSet: live video that arrived during the switch must not take
	// the slot back, or on a link with little spare capacity the
	// backlog never gets one.
	turn    connKind
	turnSet bool
	// yielded: the last backlog or retry slice ended for live video.
	yielded bool
	// skipCode and skipRun count fragments refused in a row with the same
	// skip code (the circuit breaker).
	skipCode, skipRun int
	// restartAt is where the next connection starts after a 4004, when
	// restartSet.
	restartAt  ring.ID
	restartSet bool
	// clockOffset (ns) is added to the device clock when signing.
	clockOffset atomic.Int64

	connections, sent, acks, skipped, received, bytesSent atomic.Uint64
	stale, restarts                                       atomic.Uint64
	running                                               atomic.Bool
}

// credentialJitterFrac randomises the expiry window of the cache the
// sender puts in front of a provider without one, so that streams started
// together do not refresh together.
const credentialJitterFrac = 0.2

// New validates cfg and returns a Sender. It does no I/O.
func New(cfg Config) (*Sender, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	creds := cfg.Credentials
	if _, canInvalidate := creds.(interface{ Invalidate() }); !canInvalidate {
		// Providers with Invalidate cache on their own (the daemon's
		// credentials.Manager does). A cache refreshes ahead of expiry,
		// so opening a connection rarely waits for a refresh, and an
		// open stream never does: credentials are only needed to sign a
		// new request.
		creds = credentials.NewCache(creds, cfg.CredentialMargin+time.Minute, credentialJitterFrac)
	}
	s := &Sender{
		cfg:      cfg,
		log:      cfg.Logger,
		creds:    creds,
		http:     &http.Client{Transport: newTransport(&cfg)},
		acked:    map[ring.ID]struct{}{},
		wantWake: make(chan struct{}, 1),
		state:    "starting",
		mode:     newModeState(cfg.Mode),
		aside:    map[ring.ID]*aside{},
		attempts: map[ring.ID]int{},
	}
	if m, ok := cfg.Ring.(metaStore); ok {
		s.meta = m
	} else if cfg.UploadOrder == OrderLiveFirst {
		s.log.Warn("the ring cannot describe its fragments; uploading in order")
	}
	s.loadSetAside()
	s.ctrl = newControl(&s.cfg, creds, &http.Client{Transport: newTransport(&cfg), Timeout: controlCallTimeout}, s.signTime)
	quota := func(q float64) float64 {
		if cfg.NoQuotaPacing {
			return 0 // no pacing
		}
		return q
	}
	s.frags = newBucket(cfg.Clock, quota(kvs.MaxFragmentsPerSecond), 1)
	s.connect = newBucket(cfg.Clock, quota(kvs.MaxConnectsPerSecond), 1)
	s.rateLimit = cfg.RateLimit
	rate := s.byteRate(cfg.RateLimit)
	s.bytes = newBucket(cfg.Clock, float64(rate), byteBurst(rate))
	return s, nil
}

// signTime is the time requests are signed with: the device clock plus
// the offset learnt from a refused request time.
func (s *Sender) signTime() time.Time {
	return s.cfg.Clock.Now().Add(time.Duration(s.clockOffset.Load()))
}

// byteRate is the pace of the byte bucket for an upload_rate_limit: the
// smaller of the limit and the service quota; 0 means unpaced.
func (s *Sender) byteRate(limit int64) int64 {
	rate := int64(kvs.MaxBytesPerSecond)
	if s.cfg.NoQuotaPacing {
		rate = 0
	}
	if limit > 0 && (rate == 0 || limit < rate) {
		rate = limit
	}
	return rate
}

// byteBurst is what the byte bucket may save up at rate: a tenth of a
// second's worth, and at least one write chunk so that a chunk never
// waits for more than the bucket can hold.
func byteBurst(rate int64) float64 {
	return float64(max(rate/10, chunkSize))
}

// SetRateLimit changes the upload rate limit (config upload_rate_limit) in
// bytes per second; 0 leaves only the service quota. It applies at once,
// also to the fragment being written: the next chunk is paced at the new
// rate, and a chunk waiting for the old one waits for the rest at the new
// one. Safe to call at any time, also before or while Run runs.
func (s *Sender) SetRateLimit(bytesPerSecond int64) error {
	if bytesPerSecond < 0 {
		return fmt.Errorf("sender %s: upload rate limit %d is negative; use 0 for no limit beyond the service quota", s.cfg.Stream, bytesPerSecond)
	}
	s.mu.Lock()
	// Under s.mu so that concurrent calls leave the bucket and Stats
	// agreeing on the last one.
	old := s.rateLimit
	s.rateLimit = bytesPerSecond
	rate := s.byteRate(bytesPerSecond)
	s.bytes.setRate(float64(rate), byteBurst(rate))
	s.mu.Unlock()
	if old != bytesPerSecond {
		s.log.Info("upload rate limit changed", "from", old, "to", bytesPerSecond)
	}
	return nil
}

// modeState is one setting of the upload mode. changed ends when the mode
// is set to something else; waits for the next fragment end with it, so
// that a connection opened under one mode does not go on under another.
type modeState struct {
	name    string
	changed context.Context
	cancel  context.CancelFunc
}

func newModeState(name string) *modeState {
	m := &modeState{name: name}
	m.changed, m.cancel = context.WithCancel(context.Background())
	return m
}

func (m *modeState) record() bool { return m.name == ModeRecord }

// errModeChanged ends a wait for the next fragment when SetMode changed
// the mode, and errWantEarlier when, in record mode, only fragments
// before the connection's position are wanted; the connection then ends
// gracefully and the next one starts where they are.
var (
	errModeChanged = errors.New("upload mode changed")
	errWantEarlier = errors.New("earlier fragments requested")
)

func (s *Sender) currentMode() *modeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// Mode returns the upload mode in force, ModeLive or ModeRecord.
func (s *Sender) Mode() string { return s.currentMode().name }

// SetMode switches between ModeLive and ModeRecord; safe to call at any
// time, also before or while Run runs. Fragments being written and those
// already sent finish and are acknowledged as usual; then the connection
// ends and the next one starts as the new mode starts. Live to record:
// nothing more is uploaded except what UploadRange asks for (also what it
// asked for before the switch, while in record mode). Record to live:
// everything not acknowledged is uploaded, from the first unacknowledged
// fragment on.
func (s *Sender) SetMode(mode string) error {
	if err := checkMode(mode); err != nil {
		return fmt.Errorf("sender %s: %w", s.cfg.Stream, err)
	}
	s.mu.Lock()
	old := s.mode
	if old.name == mode {
		s.mu.Unlock()
		return nil
	}
	s.mode = newModeState(mode)
	s.mu.Unlock()
	old.cancel()
	s.log.Info("upload mode changed", "from", old.name, "to", mode)
	return nil
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
			_ = limitUnsent(tc)
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
		WriteBufferSize:       bodyWriteBuffer,
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
	// Mode is the upload mode in force (ModeLive or ModeRecord) and
	// RateLimit the upload rate limit in bytes per second (0: only the
	// service quota).
	Mode      string
	RateLimit int64
	// LastAck is when a fragment was last acknowledged as stored in the
	// cloud; zero when none has been since New.
	LastAck time.Time
	// NewestAcked is the timecode (start) of the newest fragment
	// acknowledged since New; zero when none has been.
	NewestAcked time.Time
	// LiveLag is how far the cloud is behind the ring: from the later of
	// the end of the newest acknowledged fragment and the start of the
	// oldest unacknowledged one, to the end of the newest stored one.
	// Zero when nothing is unacknowledged. In record mode it grows by
	// design. With UploadOrder live-first it is measured against the
	// live cursor: fragments left to the backlog do not count, and it is
	// zero once everything from the cursor on is stored.
	LiveLag time.Duration

	// UploadOrder is Config.UploadOrder in force (live-first falls back
	// to in-order with a Store that cannot describe its fragments).
	UploadOrder string
	// LiveFrom is the live cursor: fragments with a lower ring id that
	// are not stored form the backlog.
	LiveFrom ring.ID
	// Backlog, BacklogBytes and BacklogOldest describe the backlog
	// (set-aside fragments not counted); BacklogAge is the age of its
	// oldest fragment. All zero in in-order upload.
	Backlog       int
	BacklogBytes  int64
	BacklogOldest time.Time
	BacklogAge    time.Duration
	// SetAside is how many fragments are set aside now (kept in the
	// ring, retried later), SetAsideOldest the start of the oldest, and
	// SetAsideTotal how many were set aside since New.
	SetAside       int
	SetAsideOldest time.Time
	SetAsideTotal  uint64
	// Stale counts connections ended because they took data without
	// acknowledging it; Restarts those restarted at a fragment the
	// service refused as not after the previous one (4004).
	Stale    uint64
	Restarts uint64
	// ClockOffset is the correction applied to the device clock when
	// signing, learnt from a refused request time; zero when none.
	ClockOffset time.Duration
	// Retention is the stream's data retention as last described (it is
	// described again every EndpointTTL, so a change is noticed); 0 means
	// none, and fragments are then acknowledged on RECEIVED.
	Retention time.Duration
}

// Stats returns a snapshot; safe to call at any time.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		State:         s.state,
		Alert:         s.alert,
		LastError:     s.lastErr,
		LastErrorTime: s.lastErrT,
		Mode:          s.mode.name,
		RateLimit:     s.rateLimit,
		LastAck:       s.lastAck,
		UploadOrder:   OrderInOrder,
		LiveFrom:      s.liveFrom,
		SetAsideTotal: s.setAsideTotal,
		ClockOffset:   time.Duration(s.clockOffset.Load()),
	}
	if s.liveFirst() {
		st.UploadOrder = OrderLiveFirst
	}
	var lastAside *aside
	for _, a := range s.aside {
		if lastAside == nil || a.Since.After(lastAside.Since) {
			lastAside = a
		}
	}
	var ackedEnd time.Time
	if s.newestAcked != 0 {
		st.NewestAcked = time.UnixMilli(s.newestAcked)
		ackedEnd = st.NewestAcked.Add(s.newestAckedDur)
	}
	s.mu.Unlock()
	st.Connections = s.connections.Load()
	st.Sent = s.sent.Load()
	st.Received = s.received.Load()
	st.Acked = s.acks.Load()
	st.Skipped = s.skipped.Load()
	st.Bytes = s.bytesSent.Load()
	st.Stale = s.stale.Load()
	st.Retention = s.ctrl.retentionNow()
	st.Restarts = s.restarts.Load()
	now := s.cfg.Clock.Now()
	if rs := s.cfg.Ring.Stats(); !rs.OldestUnacked.IsZero() {
		st.OldestUnacked = rs.OldestUnacked
		st.OldestUnackedAge = now.Sub(rs.OldestUnacked)
		from := rs.OldestUnacked
		if st.UploadOrder == OrderLiveFirst {
			from = time.Time{}
			if m, ok := s.liveCandidate(); ok {
				from = m.Start
			}
		}
		if !from.IsZero() {
			if ackedEnd.IsZero() || ackedEnd.Before(from) {
				ackedEnd = from
			}
			st.LiveLag = max(rs.Newest.Sub(ackedEnd), 0)
		}
	}
	if s.meta != nil {
		st.Backlog, st.BacklogBytes, st.BacklogOldest, st.SetAside, st.SetAsideOldest = s.backlogStats(now)
		if !st.BacklogOldest.IsZero() {
			st.BacklogAge = now.Sub(st.BacklogOldest)
		}
	}
	if st.SetAside > 0 && st.Alert == "" && lastAside != nil {
		st.Alert = fmt.Sprintf("%d fragment(s) set aside and kept for a later retry; last: %s", st.SetAside, lastAside.Reason)
	}
	return st
}

// noteStored records that f was acknowledged as stored in the cloud.
func (s *Sender) noteStored(f *flight) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastAck = now
	// Acknowledgements can come out of order; the newest is what counts
	// for the lag.
	if f.timecode > s.newestAcked {
		s.newestAcked, s.newestAckedDur = f.timecode, f.dur
	}
	s.skipCode, s.skipRun = 0, 0
}

// skipTrips counts a fragment refused with a skip code and reports
// whether the circuit breaker is open: SkipBreaker fragments in a row
// refused with the same code.
func (s *Sender) skipTrips(code int) (run int, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.skipCode != code {
		s.skipCode, s.skipRun = code, 0
	}
	s.skipRun++
	return s.skipRun, s.skipRun >= s.cfg.SkipBreaker
}

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
	s.dropAsideLocked(id)
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
	gone := false
	for id := range s.aside {
		if id < from {
			// Stored at last, or evicted from the ring (counted there).
			delete(s.aside, id)
			gone = true
		}
	}
	if gone {
		s.saveSetAsideLocked()
	}
	s.mu.Unlock()
	return from
}

// UploadRange asks for the fragments overlapping [from, to) to be
// uploaded (zero times are unbounded). In record mode this is the only way
// anything is uploaded; in live mode everything is uploaded anyway and the
// call only validates. Fragments already acknowledged are not sent again.
// It returns how many fragments and bytes of the range are still to go.
func (s *Sender) UploadRange(from, to time.Time) (fragments int, bytes int64, err error) {
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return 0, 0, fmt.Errorf("sender: upload range %s..%s: the end must be after the start", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	var ids []ring.ID
	err = s.cfg.Ring.Range(from, to, func(id ring.ID, f fragmenter.Fragment) error {
		if !s.isAcked(id) {
			ids = append(ids, id)
			bytes += int64(len(f.Cluster))
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sender: upload range: %w", err)
	}
	if !s.currentMode().record() {
		return len(ids), bytes, nil
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
	s.log.Info("upload requested", "from", from, "to", to, "fragments", len(ids), "bytes", bytes)
	return len(ids), bytes, nil
}

// item is a fragment taken from the ring for sending.
type item struct {
	id    ring.ID
	f     fragmenter.Fragment
	body  *ring.Body // the rest of f.Cluster, from a streaming store; or nil
	ready time.Time  // when the sender got it from the ring
}

// recycle hands the item's memory back to the store, if it takes it.
func (s *Sender) recycle(it item) {
	if it.body != nil {
		it.body.Close()
		return
	}
	if r, ok := s.cfg.Ring.(recycler); ok {
		r.Recycle(it.f)
	}
}

// next reads the fragment at or after from, through NextStream when the
// store streams.
func (s *Sender) next(ctx context.Context, from ring.ID) (item, error) {
	if st, ok := s.cfg.Ring.(streamer); ok {
		id, f, body, err := st.NextStream(ctx, from)
		return item{id: id, f: f, body: body}, err
	}
	id, f, err := s.cfg.Ring.Next(ctx, from)
	return item{id: id, f: f}, err
}

// nextToSend returns the first fragment at or after from that still has
// to be sent under mode m on a connection of kind k, blocking (live kind)
// until there is one or ctx ends. When the mode changes meanwhile it
// returns errModeChanged; a backlog or retry connection with nothing more
// to send gets errSliceDone.
func (s *Sender) nextToSend(ctx context.Context, from ring.ID, m *modeState, k connKind) (item, error) {
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.changed, cancel)()
	waitErr := func(err error) (item, error) {
		if outer.Err() == nil && m.changed.Err() != nil && errors.Is(err, context.Canceled) {
			return item{}, errModeChanged
		}
		return item{}, err
	}
	for {
		if m.changed.Err() != nil {
			return item{}, errModeChanged
		}
		switch {
		case m.record():
			// from only moves forward: a connection must not go back to
			// a wanted fragment before the last one it sent, as the
			// service refuses timecodes that go back (4004). Such a
			// fragment goes out on the next connection, which starts
			// from the first one wanted.
			next, ok := s.nextWanted(from)
			if !ok {
				if s.wantedBefore(from) {
					return item{}, errWantEarlier
				}
				select {
				case <-ctx.Done():
					return waitErr(ctx.Err())
				case <-s.wantWake:
					continue
				}
			}
			from = next
		case s.meta != nil:
			// Look the next one up in the index rather than reading
			// every stored or set-aside fragment on the way.
			end := s.indexEnd(from)
			id, ok := s.candidate(from, k)
			switch {
			case ok:
				from = id
			case k != kindLive:
				return item{}, errSliceDone
			default:
				from = max(from, end)
			}
		}
		it, err := s.next(ctx, from)
		if err != nil {
			return waitErr(err)
		}
		id := it.id
		if m.changed.Err() != nil {
			// SetMode returned while Next was reading: what the ring
			// gave is for the old mode and must not go out under it.
			s.recycle(it)
			return item{}, errModeChanged
		}
		if s.isAcked(id) {
			from = id + 1
			s.recycle(it)
			continue
		}
		if m.record() && id != from {
			// The wanted fragment was evicted before it could be sent.
			s.log.Warn("requested fragment no longer in the ring", "id", from)
			s.markAcked(from)
			s.recycle(it)
			continue
		}
		if !m.record() {
			if k != kindLive && id != from {
				from = id // evicted meanwhile: look again
				s.recycle(it)
				continue
			}
			if aside := s.isAside(id); aside != (k == kindRetry) {
				from = id + 1
				s.recycle(it)
				continue
			}
			if k == kindBacklog && id >= s.liveCursor() {
				s.recycle(it)
				return item{}, errSliceDone
			}
		}
		it.ready = time.Now()
		return it, nil
	}
}

// moreReady reports whether a fragment at or after from is already in the
// ring (or, in record mode, requested), so the writer will not wait.
func (s *Sender) moreReady(from ring.ID, m *modeState, k connKind) bool {
	if m.record() {
		_, ok := s.nextWanted(from)
		return ok
	}
	if s.meta != nil {
		_, ok := s.candidate(from, k)
		return ok
	}
	return s.cfg.Ring.NextID() > from
}

// wantedBefore reports whether a fragment before from is wanted.
func (s *Sender) wantedBefore(from ring.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.want) > 0 && s.want[0] < from
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
	authRetried, clockRetried, deniedRetried := false, false, false
	for {
		if ctx.Err() != nil {
			s.setState("stopped")
			return nil
		}
		var delay time.Duration
		retention, err := s.ctrl.ensure(ctx)
		if err == nil {
			m := s.currentMode()
			p := plan{kind: kindLive}
			ready := true
			if !m.record() {
				p, ready = s.nextPlan()
			}
			wctx, wcancel := ctx, context.CancelFunc(func() {})
			if !ready {
				// Waiting for live video; wake for a set-aside retry.
				if due := s.nextAsideDue(); !due.IsZero() {
					wctx, wcancel = context.WithTimeout(ctx, max(due.Sub(s.cfg.Clock.Now()), 0)+10*time.Millisecond)
				}
			}
			s.setState("waiting for data")
			var it item
			it, err = s.nextToSend(wctx, p.from, m, p.kind)
			timedOut := wctx.Err() != nil && ctx.Err() == nil
			wcancel()
			switch {
			case ctx.Err() != nil, errors.Is(err, errModeChanged), errors.Is(err, errWantEarlier), errors.Is(err, errSliceDone):
				continue
			case timedOut && errors.Is(err, context.DeadlineExceeded):
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
				progress, err = s.connection(ctx, it, retention, m, p)
				if progress {
					attempt = 0
					authRetried = false
					clockRetried = false
					deniedRetried = false
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
		case ClassRestart:
			// The fragment is valid as the first of a connection.
			s.restarts.Add(1)
			s.log.Info("fragment not after the previous one on that connection; starting a new connection with it", "err", err)
			continue
		case ClassSetAside:
			continue // logged where it was set aside; the stream goes on
		case ClassClock:
			if f, ok := clockFailureOf(err); ok && f.hasOffset {
				// The offset is measured against the device clock itself,
				// so it replaces any earlier one.
				s.clockOffset.Store(int64(f.offset))
				s.log.Warn("request time refused: signing with the service's clock", "offset", f.offset, "err", err)
			}
			if !clockRetried {
				clockRetried = true
				continue
			}
			s.setAlert(err.Error())
			delay = s.cfg.Backoff.Delay(attempt)
		case ClassDenied:
			if inv, ok := s.creds.(interface{ Invalidate() }); ok {
				inv.Invalidate()
			}
			if !deniedRetried {
				deniedRetried = true
				s.log.Warn("access denied; refreshing credentials and trying again", "err", err)
				continue
			}
			s.setAlert(err.Error())
			s.log.Error("access denied with fresh credentials; keeping data", "err", err, "retry_in", s.cfg.OperatorBackoff)
			delay = s.cfg.OperatorBackoff
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
		if class != ClassOperator && class != ClassDenied && offline(err) && delay > s.cfg.OfflineRetry {
			delay = s.cfg.OfflineRetry
		}
		if attempt == alertAfterAttempts && class != ClassOperator {
			// Retrying is right for these failures, but when they go on
			// this long someone should look (e.g. 5001 on every attempt).
			s.setAlert(fmt.Sprintf("uploads failing for %d attempts in a row: %v", attempt, err))
			s.log.Error("uploads keep failing; still retrying and keeping data", "attempts", attempt, "err", err)
		}
		if class != ClassOperator && class != ClassDenied {
			s.log.Warn("upload interrupted; reconnecting", "class", class.String(), "attempt", attempt, "retry_in", delay, "err", err)
			s.setState("backing off %v after %s error: %v", delay.Round(time.Millisecond), class, err)
		} else {
			s.setState("operator action needed: %v", err)
		}
		_ = clock.Sleep(ctx, s.cfg.Clock, delay)
	}
}
