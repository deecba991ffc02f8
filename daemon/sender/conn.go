package sender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender/ack"
	"github.com/kvscamd/kvscamd/internal/kvscontrol"
	"github.com/kvscamd/kvscamd/internal/sigv4"
)

// chunkSize is how much of a cluster is written (and rate-limited) at a
// time. The HTTP transport copies the request body in 32 KiB reads and
// sends each as one HTTP chunk, flushed on its own; a chunk of this size
// and its framing (four hex digits and two CRLFs) make exactly two full
// TLS records, so each costs two writes to the socket. A 64 KiB chunk
// took five: the transport cut it in two, and each half spilled a few
// bytes into a third record.
const chunkSize = 2*tlsRecordPayload - chunkFraming

const (
	tlsRecordPayload = 16 << 10 // the most plaintext one TLS record carries
	chunkFraming     = 4 + 2 + 2
	// bodyWriteBuffer holds one whole HTTP chunk, so the transport hands
	// it to TLS in one write rather than a buffer's worth at a time.
	bodyWriteBuffer = 32 << 10
)

// writeErrGrace is how long a failed body write waits for the response's
// verdict before it is reported as a plain network error.
const writeErrGrace = 2 * time.Second

// maxErrorBody bounds how much of a non-200 response is read.
const maxErrorBody = 8 << 10

// flight is a fragment sent (or being sent) on the current connection.
type flight struct {
	id       ring.ID
	timecode int64
	dur      time.Duration
	ready    time.Time // taken from the ring
	done     time.Time // last byte written; zero while writing
	armed    time.Time // bytes after it were sent; RECEIVED is due from here
	received time.Time
}

// conn is one PutMedia connection.
type conn struct {
	s         *Sender
	parent    context.Context // Run's context: its end asks for a clean stop
	ctx       context.Context // the request's context
	cancel    context.CancelCauseFunc
	pw        *io.PipeWriter
	rtDone    chan struct{} // closed when the round trip has ended
	recv      chan struct{} // a fragment was received (RECEIVED, or stored); never blocks
	header    []byte
	chunk     []byte // writer only: a streamed cluster's bytes on their way
	opened    time.Time
	credsExp  time.Time // zero when the credentials do not expire
	stopBy    time.Time // writer only: no new fragments after this once stopping
	retention int32
	mode      *modeState    // the mode the connection was opened under
	kind      connKind      // what the connection carries
	liveLag   time.Duration // live: how far behind it may fall (plan.lag)
	firstID   ring.ID       // the fragment it started with

	mu        sync.Mutex
	flights   map[int64]*flight // by fragment timecode
	order     []*flight         // send order, acknowledged ones removed
	end       error             // first reason the connection ended
	gotHeader bool              // response status received
	writing   bool
	progress  time.Time // last completed write
	draining  bool
	acked     bool      // at least one fragment was acknowledged
	lastAck   time.Time // last BUFFERING, RECEIVED or PERSISTED
	// sinceAckFrags and sinceAckMedia count the fragments (and their
	// media) written completely since the last acknowledgement: the
	// staleness a connection that takes data but never answers shows.
	sinceAckFrags int
	sinceAckMedia time.Duration
	// heldSince is when awaitReceived began holding the writer; zero when
	// it does not. A held writer adds no fragments to sinceAckFrags, so
	// staleness also counts the hold.
	heldSince time.Time
}

// finish records why the connection ends (the first reason wins) and
// tears it down: the request context is cancelled, which closes the
// socket and unblocks the writer.
func (c *conn) finish(err error) {
	c.mu.Lock()
	if c.end == nil {
		c.end = err
	}
	c.mu.Unlock()
	c.cancel(err)
	c.pw.CloseWithError(err)
}

func (c *conn) reason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end
}

// connection opens one PutMedia request starting with first and streams
// under mode m until it ends. It reports whether anything was
// acknowledged (which resets the back-off) and why it ended.
func (s *Sender) connection(ctx context.Context, first item, retention int32, m *modeState, p plan) (progress bool, err error) {
	kind := p.kind
	now := s.cfg.Clock.Now()
	endpoint, err := s.ctrl.dataEndpoint(ctx, now)
	if err != nil {
		return false, err
	}
	creds, err := s.retrieveCreds(ctx)
	if err != nil {
		return false, err
	}

	pr, pw := io.Pipe()
	// The request outlives ctx briefly: on shutdown the writer ends the
	// body cleanly and waits up to DrainTimeout for the last
	// acknowledgements, so the final fragments need not be sent again
	// after a restart. A second DrainTimeout later the request is cut.
	sctx, scancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer scancel(nil)
	c := &conn{
		s: s, parent: ctx, ctx: sctx, cancel: scancel, pw: pw,
		header:    bytes.Clone(first.f.Header), // first's memory goes back to the ring once sent
		opened:    time.Now(),
		retention: retention,
		mode:      m,
		kind:      kind,
		liveLag:   p.lag,
		firstID:   first.id,
		recv:      make(chan struct{}, 1),
		flights:   map[int64]*flight{},
		rtDone:    make(chan struct{}),
	}
	if creds.CanExpire {
		c.credsExp = creds.Expires
	}
	if kind != kindLive {
		s.startSlice()
	}

	req, err := http.NewRequestWithContext(sctx, http.MethodPost, endpoint+"/putMedia", pr)
	if err != nil {
		return false, fail(ClassEndpoint, "sender %s: data endpoint %q: %w", s.cfg.Stream, endpoint, err)
	}
	req.ContentLength = -1 // chunked
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set("X-Amzn-Stream-Name", s.cfg.Stream)
	req.Header.Set("X-Amzn-Fragment-Timecode-Type", "ABSOLUTE")
	req.Header.Set("X-Amzn-Producer-Start-Timestamp", producerTimestamp(first.f.Timecode))
	req.Header.Set("X-Amzn-Fragment-Acknowledgment-Required", "1")
	req.Header.Set("Content-Type", "application/json")
	// The body is streamed and not signed: like every known client, the
	// request is signed as if its body were empty.
	key := sigv4.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}
	if err := sigv4.Sign(req, key, kvscontrol.Service, s.cfg.Region, sigv4.EmptyPayloadHash, s.signTime()); err != nil {
		return false, fail(ClassRetry, "sender %s: sign PutMedia: %w", s.cfg.Stream, err)
	}
	s.connections.Add(1)
	s.setState("streaming to %s", endpoint)
	s.log.Debug("PutMedia connection opened", "endpoint", endpoint, "carries", kind.String(), "first_id", first.id, "first_timecode", first.f.Timecode)

	stopHard := context.AfterFunc(ctx, func() {
		time.AfterFunc(2*s.cfg.DrainTimeout, func() { c.finish(context.Canceled) })
	})
	defer stopHard()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(c.rtDone)
		c.roundTrip(req)
	}()
	go func() {
		defer wg.Done()
		c.watchdog()
	}()
	c.write(first)
	wg.Wait()
	pr.Close()

	c.mu.Lock()
	progress = c.acked
	err = c.end
	c.mu.Unlock()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return progress, err
}

// retrieveCreds gets credentials for a new connection. Credentials that
// expire within CredentialMargin would make the connection rotate after
// its first fragment, so the cache is invalidated and fresh ones fetched.
func (s *Sender) retrieveCreds(ctx context.Context) (credentials.Credentials, error) {
	for try := 0; ; try++ {
		cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
		creds, err := s.creds.Retrieve(cctx)
		cancel()
		if err != nil {
			return creds, fail(ClassRetry, "sender %s: get credentials: %w", s.cfg.Stream, err)
		}
		inv, canInvalidate := s.creds.(interface{ Invalidate() })
		if try > 0 || !canInvalidate || !creds.CanExpire || time.Until(creds.Expires) >= s.cfg.CredentialMargin {
			return creds, nil
		}
		s.log.Debug("credentials expire soon; fetching fresh ones", "expires", creds.Expires)
		inv.Invalidate()
	}
}

// producerTimestamp formats epoch milliseconds as seconds with a
// millisecond fraction.
func producerTimestamp(ms int64) string {
	return strconv.FormatInt(ms/1000, 10) + "." + fmt.Sprintf("%03d", ms%1000)
}

// errGraceful ends a connection the sender chose to close.
var errGraceful = &failure{class: ClassGraceful, err: errors.New("connection closed by the sender")}

// write is the writer loop: it sends the header, then fragments from the
// ring until the connection ends or should be rotated.
func (c *conn) write(cur item) {
	s := c.s
	if err := c.writeBytes(c.header); err != nil {
		c.finish(c.writeErr(err))
		return
	}
	for {
		err := c.sendFragment(cur)
		// From here on only cur's id and times are read.
		s.recycle(cur)
		var rerr *ringReadError
		if errors.As(err, &rerr) {
			// Part of the cluster is out; the request must end without
			// its tail so that the service discards what it got.
			c.finish(fail(ClassRetry, "sender %s: %w", s.cfg.Stream, rerr.err))
			return
		}
		if err != nil {
			c.finish(c.writeErr(err))
			return
		}
		ended := false // the end-of-fragment tag follows cur
		if !s.cfg.NoEndOfFragment && !s.moreReady(cur.id+1, c.mode, c.kind) {
			// Nothing to follow right now: tell the service the fragment
			// is complete so it is acknowledged now rather than when the
			// next one starts (a whole fragment duration later).
			if !c.endFragment() {
				return
			}
			ended = true
		}
		if why := c.rotateReason(); why != "" {
			c.closeBody(why)
			return
		}
		if s.liveFirst() && !c.mode.record() {
			c.awaitReceived(cur.id)
		}
		if why := c.yieldReason(cur.id + 1); why != "" {
			c.closeBody(why)
			return
		}
		from := cur.id + 1
		if c.kind == kindLive && s.liveFirst() && !c.mode.record() {
			// When the ring holds more than MaxLiveLag ahead of this
			// connection, live video jumps to the live edge and what it
			// passes over is left to the backlog.
			if cursor, moved := s.advanceLive(max(c.liveLag, s.cfg.MaxLiveLag)); moved && cursor > from {
				s.log.Info("live video fell behind; the fragments it skips are left to the backlog", "from", from, "live_from", cursor)
				from = cursor
			}
		}
		next, err := c.nextFragment(from)
		switch {
		case c.ctx.Err() != nil:
			return // finish was called by someone else
		case c.parent.Err() != nil && err != nil:
			c.closeBody("shutdown")
			return
		case errors.Is(err, errModeChanged), errors.Is(err, errWantEarlier), errors.Is(err, errSliceDone):
			// What is in flight is acknowledged on this connection; the
			// next one starts where the new mode, the request or the
			// scheduler says.
			c.closeBody(err.Error())
			return
		case errors.Is(err, context.DeadlineExceeded):
			c.closeBody("idle")
			return
		case err != nil:
			c.finish(fmt.Errorf("sender %s: read ring: %w", s.cfg.Stream, err))
			return
		}
		if !bytes.Equal(next.f.Header, c.header) {
			// A new codec configuration needs a new Segment, which
			// means a new PutMedia request. The next connection picks
			// this fragment up again from the ring.
			c.closeBody("codec configuration changed")
			return
		}
		if next.f.Timecode <= cur.f.Timecode {
			// The service refuses a fragment that is not after the
			// previous one on a connection (4004), but takes it as the
			// first of a new one.
			c.closeBody("timecode not after the previous fragment")
			return
		}
		if !ended && !s.cfg.NoEndOfFragment && !contiguous(cur, next) {
			// After a gap the service would size cur by next's start;
			// the tag ends it where it ends.
			if !c.endFragment() {
				return
			}
		}
		cur = next
	}
}

// gapTolerance is how far a fragment may start from where the previous
// one ended and still count as following it.
const gapTolerance = 100 * time.Millisecond

// contiguous reports whether b directly follows a in the ring and in time.
func contiguous(a, b item) bool {
	if b.id != a.id+1 {
		return false
	}
	d := time.Duration(b.f.Timecode-a.f.Timecode)*time.Millisecond - a.f.Duration
	return d <= gapTolerance && d >= -gapTolerance
}

// endFragment writes the end-of-fragment tag; false when the connection
// failed (it is then finished).
func (c *conn) endFragment() bool {
	c.arm()
	if err := c.writeBytes(endOfFragmentTag); err != nil {
		c.finish(c.writeErr(err))
		return false
	}
	return true
}

// yieldReason says why the scheduler wants this connection to end before
// the next fragment (live-first only), or "": a backlog or retry slice
// yields once live video has waited half of MaxLiveLag; a live connection
// that has sent all the live video there is ends when a backlog waits,
// so that the backlog drains in the spare capacity, or when a set-aside
// fragment is due for its retry, which otherwise never gets a connection
// while live video keeps coming.
func (c *conn) yieldReason(next ring.ID) string {
	s := c.s
	if !s.liveFirst() || c.mode.record() {
		return ""
	}
	switch c.kind {
	case kindLive:
		if !s.moreReady(next, c.mode, kindLive) {
			if s.hasBacklog() {
				s.giveTurn(kindBacklog)
				return "live video sent; backlog waiting"
			}
			if s.retryDue() {
				s.giveTurn(kindRetry)
				return "live video sent; set-aside retry due"
			}
		}
	default:
		if waiting, waited := s.liveWaiting(); waiting && waited >= s.cfg.MaxLiveLag/2 {
			s.yieldedToLive()
			return "live video waiting"
		}
	}
	return ""
}

// nextFragment waits for the next fragment to send: up to IdleClose while
// running. Once Run's context has ended it keeps sending only until
// ShutdownGrace after it first noticed, so that the fragment the capture
// side flushes as it stops still goes out on this connection while a
// backlog cannot hold up the stop.
func (c *conn) nextFragment(from ring.ID) (item, error) {
	s := c.s
	if c.parent.Err() == nil {
		ctx, cancel := context.WithTimeout(c.ctx, s.cfg.IdleClose)
		defer cancel()
		var shutdown atomic.Bool
		unhook := context.AfterFunc(c.parent, func() { shutdown.Store(true); cancel() })
		it, err := s.nextToSend(ctx, from, c.mode, c.kind)
		unhook()
		if err == nil || !shutdown.Load() {
			return it, err
		}
	}
	if c.stopBy.IsZero() {
		c.stopBy = time.Now().Add(s.cfg.ShutdownGrace)
	}
	ctx, cancel := context.WithDeadline(c.ctx, c.stopBy)
	defer cancel()
	return s.nextToSend(ctx, from, c.mode, c.kind)
}

// writeErr turns a body write error into the connection's end reason: if
// something else already ended the connection, that reason stands.
func (c *conn) writeErr(err error) error {
	// The transport closes the body when the request fails, so a write
	// error often only echoes the real answer (a 403, a throttle) that
	// the round trip is about to classify. Give it a moment.
	t := time.NewTimer(writeErrGrace)
	select {
	case <-c.ctx.Done():
	case <-c.rtDone:
	case <-t.C:
	}
	t.Stop()
	if r := c.reason(); r != nil {
		return r
	}
	return fail(ClassRetry, "sender %s: write body: %w", c.s.cfg.Stream, err)
}

// rotateReason says why the connection should end before the next
// fragment, or "".
func (c *conn) rotateReason() string {
	now := time.Now()
	if now.Sub(c.opened) >= c.s.cfg.RotateAfter {
		return "connection age"
	}
	if !c.credsExp.IsZero() && c.credsExp.Sub(now) < c.s.cfg.CredentialMargin {
		return "credentials expire soon"
	}
	return ""
}

// sendFragment writes one cluster, paced by the quotas.
func (c *conn) sendFragment(it item) error {
	s := c.s
	if err := s.frags.wait(c.ctx, 1); err != nil {
		return err
	}
	fl := &flight{id: it.id, timecode: it.f.Timecode, dur: it.f.Duration, ready: it.ready}
	now := time.Now()
	c.mu.Lock()
	// Bytes of a new fragment follow the previous one: from now on its
	// RECEIVED is due (the service acknowledges a fragment when the next
	// one starts).
	for _, f := range c.order {
		if f.armed.IsZero() {
			f.armed = now
		}
	}
	if old, dup := c.flights[fl.timecode]; dup {
		// Two fragments with one timecode: the service will refuse the
		// second (4004); acknowledgements can only name one of them.
		s.log.Warn("fragment timecode repeats", "timecode", fl.timecode, "id", it.id, "previous_id", old.id)
	}
	c.flights[fl.timecode] = fl
	c.order = append(c.order, fl)
	c.mu.Unlock()

	if s.cfg.OnSend != nil {
		s.cfg.OnSend(it.id)
	}
	b := it.f.Cluster
	for len(b) > 0 {
		n := min(len(b), chunkSize)
		if err := s.bytes.wait(c.ctx, float64(n)); err != nil {
			return err
		}
		if err := c.writeBytes(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	if body := it.body; body != nil && body.Len() > 0 {
		if c.chunk == nil {
			c.chunk = make([]byte, chunkSize)
		}
		for body.Len() > 0 {
			n := min(body.Len(), chunkSize)
			if err := s.bytes.wait(c.ctx, float64(n)); err != nil {
				return err
			}
			if _, err := io.ReadFull(body, c.chunk[:n]); err != nil {
				return &ringReadError{fmt.Errorf("read fragment %d from the ring: %w", it.id, err)}
			}
			// The pipe returns once the request has taken the bytes, so
			// the chunk is free again for the next read.
			if err := c.writeBytes(c.chunk[:n]); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	fl.done = time.Now()
	c.sinceAckFrags++
	c.sinceAckMedia += it.f.Duration
	c.mu.Unlock()
	s.sent.Add(1)
	return nil
}

// ringReadError is a fragment that could not be read to its end while it
// was being sent (ring.ErrEvicted, a failing disk).
type ringReadError struct{ err error }

func (e *ringReadError) Error() string { return e.err.Error() }
func (e *ringReadError) Unwrap() error { return e.err }

func (c *conn) writeBytes(b []byte) error {
	c.mu.Lock()
	c.writing = true
	c.progress = time.Now()
	c.mu.Unlock()
	n, err := c.pw.Write(b)
	c.s.bytesSent.Add(uint64(n))
	c.mu.Lock()
	c.writing = false
	c.progress = time.Now()
	c.mu.Unlock()
	return err
}

// inFlightFragments is how many fragments written before the last one may
// wait for their RECEIVED before the writer holds (see awaitReceived).
// With one, the socket runs empty between fragments: each release is a
// burst that a shallow bottleneck queue tail-drops, and the retransmission
// time-outs that follow stalled a 1.2x link for 8 s. Two keep the socket
// busy while bounding what is in flight to about two fragments.
const inFlightFragments = 2

// awaitReceived holds a connection (live-first scheduling), after it has
// written the fragment cur, until at most inFlightFragments-1 fragments
// written before it wait for their RECEIVED, or the connection ends.
// A connection that writes as fast as the socket takes (a backlog slice,
// live video catching up) runs ahead of the link by what is in flight:
// seconds of video on a slow uplink with deep buffers, which is lag for
// live video behind it. The scheduler decides at fragment boundaries
// whether to switch; ahead of the link it switches that much too late,
// and the close waits for it all. With about two fragments in flight the
// link stays busy and the decision is made close to what the service has.
func (c *conn) awaitReceived(cur ring.ID) {
	defer func() {
		c.mu.Lock()
		c.heldSince = time.Time{}
		c.mu.Unlock()
	}()
	for {
		c.mu.Lock()
		unreceived := 0
		for _, f := range c.order {
			if f.id != cur && f.received.IsZero() {
				unreceived++
			}
		}
		pending := unreceived >= inFlightFragments
		if pending && c.heldSince.IsZero() {
			c.heldSince = time.Now()
		}
		c.mu.Unlock()
		if !pending {
			return
		}
		select {
		case <-c.recv:
		case <-c.ctx.Done():
			return // the watchdog or the response ended it
		}
	}
}

// noteReceived wakes awaitReceived. c.mu is held.
func (c *conn) noteReceived() {
	select {
	case c.recv <- struct{}{}:
	default:
	}
}

// arm starts the RECEIVED deadline of every fragment written completely.
func (c *conn) arm() {
	now := time.Now()
	c.mu.Lock()
	for _, f := range c.order {
		if f.armed.IsZero() && !f.done.IsZero() {
			f.armed = now
		}
	}
	c.mu.Unlock()
}

// endOfFragmentTag is a segment-level Tags element holding the
// AWS_KINESISVIDEO_END_OF_FRAGMENT tag with an empty value. It ends the
// open Cluster; the service treats it as the end of the fragment.
var endOfFragmentTag = func() []byte {
	name := "AWS_KINESISVIDEO_END_OF_FRAGMENT"
	simple := append([]byte{0x45, 0xA3, 0x80 | byte(len(name))}, name...)  // TagName
	simple = append(simple, 0x44, 0x87, 0x80)                              // TagString ""
	tag := append([]byte{0x67, 0xC8, 0x80 | byte(len(simple))}, simple...) // SimpleTag
	tags := append([]byte{0x73, 0x73, 0x80 | byte(len(tag))}, tag...)      // Tag
	return append([]byte{0x12, 0x54, 0xC3, 0x67, 0x80 | byte(len(tags))}, tags...)
}()

// closeBody ends the request body on purpose and waits for the service to
// acknowledge what is in flight and end the response.
func (c *conn) closeBody(why string) {
	c.s.log.Debug("ending PutMedia connection", "why", why)
	now := time.Now()
	c.mu.Lock()
	c.draining = true
	for _, f := range c.order {
		if f.armed.IsZero() {
			f.armed = now
		}
	}
	c.mu.Unlock()
	c.pw.Close()
	t := time.NewTimer(c.s.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-c.ctx.Done():
		// The response ended (or failed); finish has been called.
	case <-t.C:
		c.finish(fail(ClassRetry, "sender %s: no end of the response %v after closing the body (%s)", c.s.cfg.Stream, c.s.cfg.DrainTimeout, why))
	}
}

// roundTrip performs the request and reads the acknowledgement stream.
func (c *conn) roundTrip(req *http.Request) {
	s := c.s
	resp, err := s.http.Do(req)
	if err != nil {
		c.finish(c.netErr("PutMedia", err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.finish(putMediaHTTPError(s.cfg.Stream, resp, s.cfg.Clock.Now()))
		return
	}
	c.mu.Lock()
	c.gotHeader = true
	c.mu.Unlock()
	dec := ack.NewDecoder(resp.Body)
	for {
		ev, err := dec.Next()
		if err != nil {
			c.finish(c.ackStreamEnd(err))
			return
		}
		if err := c.handle(ev); err != nil {
			c.finish(err)
			return
		}
	}
}

// netErr classifies a transport error; when the connection already has a
// reason (the watchdog or the writer cancelled it), that reason stands.
func (c *conn) netErr(op string, err error) error {
	if r := c.reason(); r != nil {
		return r
	}
	return fail(ClassRetry, "sender %s: %s: %w", c.s.cfg.Stream, op, err)
}

func (c *conn) ackStreamEnd(err error) error {
	if r := c.reason(); r != nil {
		return r
	}
	s := c.s
	var sm *ack.ServiceMessageError
	switch {
	case errors.As(err, &sm) && isExpiredToken(sm.Message):
		return fail(ClassAuth, "sender %s: %w", s.cfg.Stream, err)
	case errors.As(err, &sm):
		return fail(ClassRetry, "sender %s: %w", s.cfg.Stream, err)
	case errors.Is(err, io.EOF):
		c.mu.Lock()
		draining := c.draining
		left := len(c.order)
		c.mu.Unlock()
		if draining {
			if left > 0 {
				s.log.Warn("connection ended before every fragment was acknowledged; they will be sent again", "unacknowledged", left)
			}
			return errGraceful
		}
		return fail(ClassRetry, "sender %s: the service ended the PutMedia response", s.cfg.Stream)
	case errors.Is(err, ack.ErrMalformed):
		return fail(ClassRetry, "sender %s: %w", s.cfg.Stream, err)
	}
	return fail(ClassRetry, "sender %s: acknowledgements: %w", s.cfg.Stream, err)
}

// lookup finds the flight an acknowledgement names. An ERROR for data
// the service could not parse carries timecode -1; it is about the oldest
// fragment not yet received.
func (c *conn) lookup(ev ack.Event) *flight {
	if ev.HasTimecode {
		if f := c.flights[ev.Timecode]; f != nil {
			return f
		}
	}
	if ev.Type == ack.Error {
		for _, f := range c.order {
			if f.received.IsZero() {
				return f
			}
		}
	}
	return nil
}

// handle applies one acknowledgement; a non-nil result ends the
// connection.
func (c *conn) handle(ev ack.Event) error {
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Type != ack.Idle {
		c.lastAck = time.Now()
		c.sinceAckFrags, c.sinceAckMedia = 0, 0
	}
	switch ev.Type {
	case ack.Idle, ack.Buffering:
		return nil
	case ack.Received:
		f := c.lookup(ev)
		if f == nil {
			s.log.Debug("acknowledgement for an unknown fragment", "event", ev.String())
			return nil
		}
		if f.received.IsZero() {
			f.received = time.Now()
			c.noteReceived()
			s.received.Add(1)
			if s.cfg.OnReceived != nil {
				s.cfg.OnReceived(f.id, f.received.Sub(f.ready))
			}
		}
		c.acked = true
		if c.retention == 0 {
			return c.store(f, false)
		}
		return nil
	case ack.Persisted:
		f := c.lookup(ev)
		if f == nil {
			s.log.Debug("acknowledgement for an unknown fragment", "event", ev.String())
			return nil
		}
		c.acked = true
		return c.store(f, false)
	case ack.Error:
		return c.ackError(ev)
	}
	s.log.Debug("unknown acknowledgement type ignored", "event", ev.String())
	return nil
}

// store acknowledges f in the ring (as stored, or as given up) and drops
// it from the flights. c.mu is held.
func (c *conn) store(f *flight, givenUp bool) error {
	s := c.s
	delete(c.flights, f.timecode)
	for i, g := range c.order {
		if g == f {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	s.markAcked(f.id)
	c.noteReceived()
	if !givenUp {
		s.setAlert("") // whatever needed a person is fixed
	}
	if givenUp {
		s.skipped.Add(1)
	} else {
		s.acks.Add(1)
		s.noteStored(f)
	}
	if err := s.cfg.Ring.Ack(f.id); err != nil {
		// The ring could not record it durably: after a restart the
		// fragment may be sent again, which costs bandwidth, not data.
		s.log.Error("ring acknowledgement failed", "id", f.id, "err", err)
	}
	return nil
}

func (c *conn) ackError(ev ack.Event) error {
	s := c.s
	class := AckErrorClass(ev.ErrorID)
	f := c.lookup(ev)
	desc := fmt.Sprintf("error %d %s for fragment %d", ev.ErrorID, ev.ErrorCode, ev.Timecode)
	switch class {
	case ClassSkip:
		if f == nil {
			return fail(ClassRetry, "sender %s: %s, which was not sent on this connection", s.cfg.Stream, desc)
		}
		if run, open := s.skipTrips(ev.ErrorID); open {
			// Several fragments in a row refused the same way: the cause
			// is not one bad fragment, and skipping would throw away the
			// stream. Keep everything and ask for a person.
			return fail(ClassOperator, "sender %s: %s (ring id %d): %d fragments in a row refused with %d; no longer skipping, data kept: check the camera's encoder settings and the stream's media type",
				s.cfg.Stream, desc, f.id, run, ev.ErrorID)
		}
		s.log.Error("service refused a fragment; it is given up and will not be sent again",
			"id", f.id, "timecode", f.timecode, "error_id", ev.ErrorID, "error_code", ev.ErrorCode)
		c.store(f, true)
		return fail(ClassSkip, "sender %s: %s (ring id %d) given up", s.cfg.Stream, desc, f.id)
	case ClassRestart:
		if f == nil {
			return fail(ClassRestart, "sender %s: %s; starting a new connection", s.cfg.Stream, desc)
		}
		if f.id == c.firstID {
			// Refused even as the first fragment of a connection: count
			// it like any other retryable failure.
			return c.retryOrSetAside(f, ev, desc)
		}
		// Counted too, so that a fragment refused this way again and
		// again cannot restart connections forever.
		if _, exhausted := s.noteAttempt(f); exhausted {
			s.setAside(f, ev.ErrorID, desc)
			return fail(ClassSetAside, "sender %s: %s (ring id %d) set aside after %d attempts", s.cfg.Stream, desc, f.id, s.cfg.MaxAttempts)
		}
		s.mu.Lock()
		s.restartAt, s.restartSet = f.id, true
		s.mu.Unlock()
		return fail(ClassRestart, "sender %s: %s; starting a new connection with it", s.cfg.Stream, desc)
	case ClassSetAside:
		if f == nil {
			return fail(ClassRetry, "sender %s: %s, which was not sent on this connection", s.cfg.Stream, desc)
		}
		s.setAside(f, ev.ErrorID, fmt.Sprintf("%s: %s", desc, ackErrorHint(ev.ErrorID)))
		return fail(ClassSetAside, "sender %s: %s (ring id %d) set aside: %s", s.cfg.Stream, desc, f.id, ackErrorHint(ev.ErrorID))
	case ClassOperator:
		return fail(ClassOperator, "sender %s: %s: %s", s.cfg.Stream, desc, ackErrorHint(ev.ErrorID))
	}
	if f == nil || ev.ErrorID == 4003 {
		// About the connection, not a fragment.
		return fail(ClassRetry, "sender %s: %s; sending it again", s.cfg.Stream, desc)
	}
	return c.retryOrSetAside(f, ev, desc)
}

// retryOrSetAside counts a retryable refusal of f: it is sent again on
// the next connection, or set aside once it has failed MaxAttempts times.
func (c *conn) retryOrSetAside(f *flight, ev ack.Event, desc string) error {
	s := c.s
	n, exhausted := s.noteAttempt(f)
	if exhausted {
		s.setAside(f, ev.ErrorID, desc)
		return fail(ClassSetAside, "sender %s: %s (ring id %d) set aside after %d attempts", s.cfg.Stream, desc, f.id, max(n, 1))
	}
	return fail(ClassRetry, "sender %s: %s; sending it again (attempt %d of %d)", s.cfg.Stream, desc, n+1, s.cfg.MaxAttempts)
}

// watchdog ends the connection when the service stops answering: no
// response status, a write that does not progress, a fragment that is not
// RECEIVED or PERSISTED in time.
func (c *conn) watchdog() {
	cfg := &c.s.cfg
	period := min(cfg.AckTimeout, cfg.StallTimeout, cfg.HeaderTimeout, cfg.PersistTimeout) / 4
	period = max(period, 5*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			if err := c.overdue(now); err != nil {
				c.finish(err)
				return
			}
		}
	}
}

func (c *conn) overdue(now time.Time) error {
	cfg := &c.s.cfg
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gotHeader && now.Sub(c.opened) > cfg.HeaderTimeout {
		return fail(ClassRetry, "sender %s: no response from the data endpoint within %v", cfg.Stream, cfg.HeaderTimeout)
	}
	if c.writing && now.Sub(c.progress) > cfg.StallTimeout {
		return fail(ClassRetry, "sender %s: upload stalled: no data accepted for %v", cfg.Stream, cfg.StallTimeout)
	}
	// Staleness: media keeps going out but nothing comes back. Write
	// progress cannot prove a connection alive (a path that swallows
	// bytes, or a server that reads and never answers, both take data),
	// so this counts what was written since the last acknowledgement.
	quiet := c.lastAck
	if quiet.IsZero() {
		quiet = c.opened
	}
	stale := c.sinceAckFrags > cfg.StaleFragments || c.sinceAckMedia >= cfg.StaleMedia
	if !c.heldSince.IsZero() && now.Sub(c.heldSince) >= cfg.StaleWait {
		// The writer waits for the RECEIVED of a fragment the service
		// has all of (the next one followed it whole) and has not
		// written more: as many fragments as it will write unanswered.
		stale = stale || c.sinceAckFrags >= cfg.StaleFragments
	}
	if now.Sub(quiet) >= cfg.StaleWait && stale {
		c.s.stale.Add(1)
		return fail(ClassRetry, "sender %s: no acknowledgement for %v while %d fragments (%v of media) were sent: the connection takes data but does not answer",
			cfg.Stream, now.Sub(quiet).Round(time.Millisecond), c.sinceAckFrags, c.sinceAckMedia)
	}
	// A fragment is overdue when neither acknowledgements nor the upload
	// moved for AckTimeout after its RECEIVED became due. Counting
	// progress matters on slow links: bytes queued in socket buffers reach
	// the service long after the writer handed them over, and the service
	// can only acknowledge a fragment once it has read past it.
	busy := c.lastAck
	if c.progress.After(busy) {
		busy = c.progress
	}
	for _, f := range c.order {
		if f.received.IsZero() && !f.armed.IsZero() && now.Sub(later(f.armed, busy)) > cfg.AckTimeout {
			return fail(ClassRetry, "sender %s: fragment %d not RECEIVED within %v", cfg.Stream, f.timecode, cfg.AckTimeout)
		}
		if c.retention > 0 && !f.received.IsZero() && now.Sub(f.received) > cfg.PersistTimeout {
			return fail(ClassRetry, "sender %s: fragment %d not PERSISTED within %v of RECEIVED", cfg.Stream, f.timecode, cfg.PersistTimeout)
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// putMediaHTTPError classifies a non-200 PutMedia answer; now is the
// device clock, against which a clock offset is learnt.
func putMediaHTTPError(stream string, resp *http.Response, now time.Time) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// The service names the error in one of two headers.
	typ := resp.Header.Get("x-amzn-ErrorType")
	if typ == "" {
		typ = resp.Header.Get("x-amz-ErrorType")
	}
	if i := bytes.IndexByte([]byte(typ), ':'); i >= 0 {
		typ = typ[:i]
	}
	msg := string(bytes.TrimSpace(body))
	err := fmt.Errorf("sender %s: PutMedia: HTTP %d %s %s", stream, resp.StatusCode, typ, msg)
	contains := func(s string) bool { return bytes.Contains(body, []byte(s)) || typ == s }
	denied := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized
	switch {
	case contains("ClientLimitExceededException"), contains("ConnectionLimitExceededException"), contains("ThrottlingException"), resp.StatusCode == http.StatusTooManyRequests:
		return &failure{class: ClassThrottle, err: err}
	case contains("InvalidEndpointException"):
		return &failure{class: ClassEndpoint, err: err}
	case denied && (isExpiredToken(msg) || contains("ExpiredTokenException")):
		return &failure{class: ClassAuth, err: err}
	case isSignatureExpired(msg) || isSignatureExpired(typ):
		return clockFailure(err, resp.Header, now)
	case denied:
		return &failure{class: ClassDenied, err: fmt.Errorf("%w: the credentials need IAM permission kinesisvideo:PutMedia on this stream", err)}
	case resp.StatusCode == http.StatusNotFound || contains("ResourceNotFoundException"):
		return &failure{class: ClassStream, err: err}
	}
	return &failure{class: ClassRetry, err: err}
}
