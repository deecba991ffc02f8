package kvslocal

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Framing is how ACK objects are laid out on the response body. The
// service documents newline-separated objects but proxies bunch and split
// them, so clients must decode a JSON stream; the non-newline framings
// make sure they do.
type Framing int

const (
	// FramingMixed rotates through newline-terminated, concatenated and
	// split-across-writes objects.
	FramingMixed Framing = iota
	// FramingNewline ends every object with "\n".
	FramingNewline
	// FramingConcatenated writes objects back to back with no separator.
	FramingConcatenated
	// FramingSplit writes every object in two flushed halves.
	FramingSplit
)

// Event types of PutMedia ACKs.
const (
	EventBuffering = "BUFFERING"
	EventReceived  = "RECEIVED"
	EventPersisted = "PERSISTED"
	EventError     = "ERROR"
	EventIdle      = "IDLE"
)

// errorDrainTime bounds how long the body is still read (and discarded)
// after an ERROR ack.
const errorDrainTime = 2 * time.Second

// rejectDrainTime bounds the same after an HTTP error answer.
const rejectDrainTime = 500 * time.Millisecond

var (
	errDropped = errors.New("connection dropped (injected)")
	errIdle    = errors.New("idle timeout")
)

// session is one PutMedia connection.
type session struct {
	s    *Server
	st   *stream
	num  int
	w    http.ResponseWriter
	rc   *http.ResponseController
	conn net.Conn
	p    *parser

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []queuedAck
	qClosed  bool
	abortErr error
	finished bool
	open     *fragment // for early acks
	file     *os.File
	fileName string

	lastByte atomic.Int64  // unix ns of the latest body byte
	dead     chan struct{} // closed when the connection must stop at once
	deadOnce sync.Once
	written  int
}

type queuedAck struct {
	a         Ack
	notBefore time.Time
}

func (s *Server) nextFragmentNumber() string {
	return fmt.Sprintf("91343852333%037d", s.fragSeq.Add(1))
}

func (s *Server) handlePutMedia(w http.ResponseWriter, r *http.Request, reqID string) {
	fail := func(e *apiError) {
		s.log.Info("kvslocal: PutMedia rejected", "stream", r.Header.Get("x-amzn-stream-name"), "type", e.Type, "msg", e.Message)
		// Answer without waiting for the body (a producer streams it
		// forever), then close: read what arrives for a moment so the
		// close does not reset the connection under the answer.
		w.Header().Set("Connection", "close")
		writeAPIError(w, reqID, e)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		_ = rc.SetReadDeadline(time.Now().Add(rejectDrainTime))
	}
	hash, aerr := s.putMediaPayloadHash(r)
	if aerr != nil {
		fail(aerr)
		return
	}
	if _, aerr := s.verify(r, hash); aerr != nil {
		fail(aerr)
		return
	}
	st, aerr := s.lookup(streamRef{StreamName: r.Header.Get("x-amzn-stream-name"), StreamARN: r.Header.Get("x-amzn-stream-arn")}, true)
	if aerr != nil {
		if aerr.Type == excInvalidArgument {
			aerr.Message = "PutMedia needs exactly one of the headers x-amzn-stream-name and x-amzn-stream-arn: " + aerr.Message
		}
		fail(aerr)
		return
	}
	if st.faults.takeThrottle() {
		fail(errClientLimit("The request was throttled (injected)."))
		return
	}
	if !st.putRate.allow(s.now(), s.opts.PutMediaCallsPerSecond) {
		fail(errClientLimit("You have exceeded the limit of PutMedia calls per second for this stream."))
		return
	}
	relative := false
	switch tt := r.Header.Get("x-amzn-fragment-timecode-type"); tt {
	case "ABSOLUTE":
	case "RELATIVE":
		relative = true
	default:
		fail(errInvalidArg("x-amzn-fragment-timecode-type %q must be ABSOLUTE or RELATIVE", tt))
		return
	}
	startHdr := r.Header.Get("x-amzn-producer-start-timestamp")
	start, err := strconv.ParseFloat(startHdr, 64)
	if err != nil || start < 0 {
		fail(errInvalidArg("x-amzn-producer-start-timestamp %q must be epoch seconds, e.g. 1700000000.123", startHdr))
		return
	}
	ss := &session{s: s, st: st, w: w, rc: http.NewResponseController(w), dead: make(chan struct{})}
	ss.cond = sync.NewCond(&ss.mu)
	ss.conn, _ = r.Context().Value(connKey{}).(net.Conn)
	st.mu.Lock()
	if old := st.active; old != nil && s.opts.ReplaceOpenConnection {
		// The older behaviour: the new connection wins. The old one is
		// cut off like a dropped connection; its release leaves the
		// slot alone since it no longer holds it.
		st.active = nil
		old.kill()
		if old.conn != nil {
			_ = old.conn.Close()
		}
	}
	if st.active != nil {
		// The current quotas page (Kinesis Video Streams service quotas,
		// data plane, PutMedia: one connection per stream, hard limit)
		// says that when a second PutMedia connection is opened on a
		// stream, the latest one is throttled with
		// ConnectionLimitExceededException; the open one carries on. (The
		// 2020 text, where the last connection won, no longer applies.)
		st.mu.Unlock()
		fail(&apiError{http.StatusBadRequest, excConnectionLimit, "There is already an open PutMedia connection on this stream; only one is allowed."})
		return
	}
	st.conns++
	ss.num = st.conns
	st.active = ss
	st.mu.Unlock()
	s.wg.Add(1)
	defer s.wg.Done()
	defer func() {
		ss.mu.Lock()
		ss.finished = true // no ResponseController calls after return
		ss.mu.Unlock()
		ss.release()
		if ss.file != nil {
			_ = ss.file.Close()
		}
		st.settle(ss.num)
	}()

	if err := ss.rc.EnableFullDuplex(); err != nil {
		s.log.Warn("kvslocal: full duplex unavailable", "err", err)
	}
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		// Some producers wait for this before sending the body. Written
		// before the headers are set, which Go would copy into it.
		w.WriteHeader(http.StatusContinue)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-RequestId", reqID)
	setDate(h, s.now())
	// One PutMedia per TCP connection: when it ends the server closes the
	// connection rather than parse leftover body bytes as a request.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	_ = ss.rc.Flush()
	s.log.Info("kvslocal: PutMedia connected", "stream", st.name, "connection", ss.num, "relative", relative)

	ss.lastByte.Store(s.now().UnixNano())
	cfg := mkvConfig{
		MaxFragmentSize:     s.opts.MaxFragmentSize,
		MaxFragmentDuration: s.opts.MaxFragmentDuration,
		MinFragmentDuration: s.opts.MinFragmentDuration,
		MaxTracks:           s.opts.MaxTracks,
		MaxMetadata:         s.opts.MaxFragmentMetadata,
		MaxFuture:           s.opts.MaxFutureTimestamp,
		Relative:            relative,
		ProducerStart:       time.Duration(start * float64(time.Second)),
		Now:                 s.now,
	}
	ss.p = newParser(&bodyReader{ss: ss, r: r.Body}, cfg, ss)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); ss.ackLoop() }()
	parseDone := make(chan error, 1)
	go func() { parseDone <- ss.p.run() }()

	err = ss.supervise(parseDone)
	ss.mu.Lock()
	idleEnd := errors.Is(ss.abortErr, errIdle)
	ss.mu.Unlock()
	if idleEnd {
		// The service just closes an idle request; a fragment cut short
		// by the silence is dropped without an ERROR.
		err = errIdle
	}
	var me *StreamError
	switch {
	case err == nil || errors.Is(err, errIdle):
		s.log.Info("kvslocal: PutMedia ended", "stream", st.name, "connection", ss.num, "why", errString(err))
	case errors.As(err, &me):
		s.log.Info("kvslocal: PutMedia error", "stream", st.name, "connection", ss.num, "error_id", me.Code, "msg", me.Msg)
		ss.enqueue(Ack{EventType: EventError, FragmentTimecode: me.Timecode, FragmentNumber: me.Number, ErrorID: me.Code, ErrorCode: me.ErrorCode()}, time.Time{})
	default:
		// The client went away or the connection was dropped on purpose:
		// nothing more can be said on it.
		s.log.Info("kvslocal: PutMedia connection lost", "stream", st.name, "connection", ss.num, "err", err)
		ss.kill()
	}
	ss.mu.Lock()
	ss.qClosed = true
	ss.cond.Broadcast()
	ss.mu.Unlock()
	<-writerDone
	if errors.Is(err, errDropped) {
		if ss.conn != nil {
			_ = ss.conn.Close()
		}
		return
	}
	if errors.As(err, &me) {
		// For the service the connection is over once the ERROR is out,
		// so the stream takes a new one at once.
		ss.release()
		// Give the producer a moment to see the ERROR and stop sending:
		// closing a socket with unread data resets it, and the reset can
		// destroy the ACK before the client reads it.
		_ = ss.rc.SetReadDeadline(time.Now().Add(errorDrainTime))
		_, _ = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		// End the response now instead of waiting for the rest of a body
		// nobody will read.
		_ = ss.rc.SetReadDeadline(time.Now())
	}
}

// release frees the stream's connection slot.
func (ss *session) release() {
	st := ss.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.active == ss {
		st.active = nil
		st.notifyLocked()
	}
}

func errString(err error) string {
	if err == nil {
		return "end of body"
	}
	return err.Error()
}

// supervise waits for the parser while sending IDLE events and enforcing
// the idle and connection-duration limits.
func (ss *session) supervise(parseDone chan error) error {
	o := &ss.s.opts
	tick := o.IdleAckInterval
	if o.IdleTimeout < tick {
		tick = o.IdleTimeout
	}
	if o.AckOpenFragmentAfter > 0 && o.AckOpenFragmentAfter < tick {
		tick = o.AckOpenFragmentAfter
	}
	tick /= 4
	if tick < 5*time.Millisecond {
		tick = 5 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	maxDur := time.NewTimer(o.MaxConnectionDuration)
	defer maxDur.Stop()
	lastIdle := time.Time{}
	for {
		select {
		case err := <-parseDone:
			return err
		case <-maxDur.C:
			ss.abort(&StreamError{Code: ErrMaxConnectionDuration, Msg: fmt.Sprintf("connection open longer than %v", o.MaxConnectionDuration), Timecode: -1})
		case <-t.C:
			now := ss.s.now()
			idle := now.Sub(time.Unix(0, ss.lastByte.Load()))
			if idle >= o.IdleTimeout {
				ss.abort(errIdle)
				continue
			}
			if idle >= o.IdleAckInterval && now.Sub(lastIdle) >= o.IdleAckInterval {
				lastIdle = now
				ss.enqueue(Ack{EventType: EventIdle, FragmentTimecode: -1}, time.Time{})
			}
			if o.AckOpenFragmentAfter > 0 && idle >= o.AckOpenFragmentAfter {
				ss.ackOpenEarly()
			}
		}
	}
}

// abort stops reading the body; the parser then returns err.
func (ss *session) abort(err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.finished {
		return
	}
	if ss.abortErr == nil {
		ss.abortErr = err
	}
	_ = ss.rc.SetReadDeadline(time.Now())
}

func (ss *session) kill() {
	ss.deadOnce.Do(func() { close(ss.dead) })
}

func (ss *session) ackOpenEarly() {
	ss.mu.Lock()
	f := ss.open
	if f == nil || f.forceAcked || f.number == "" || f.failCode != 0 {
		ss.mu.Unlock()
		return
	}
	f.forceAcked = true
	ss.mu.Unlock()
	ss.enqueueReceived(f.timecode, f.number)
}

func (ss *session) enqueueReceived(tc int64, number string) {
	ss.enqueue(Ack{EventType: EventReceived, FragmentTimecode: tc, FragmentNumber: number}, time.Time{})
	if ss.retention() > 0 {
		ss.enqueue(Ack{EventType: EventPersisted, FragmentTimecode: tc, FragmentNumber: number}, ss.s.now().Add(max(ss.s.opts.PersistDelay, 0)))
	}
}

func (ss *session) retention() int {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	return ss.st.info.DataRetentionInHours
}

func (ss *session) enqueue(a Ack, notBefore time.Time) {
	a.Connection = ss.num
	ss.mu.Lock()
	if !ss.qClosed {
		ss.queue = append(ss.queue, queuedAck{a, notBefore})
		ss.cond.Signal()
	}
	ss.mu.Unlock()
}

// ackLoop writes queued ACKs in order, honouring stalls and delays. It
// returns when the queue is closed and drained, or the connection dies.
func (ss *session) ackLoop() {
	for {
		ss.mu.Lock()
		for len(ss.queue) == 0 && !ss.qClosed {
			ss.cond.Wait()
		}
		if len(ss.queue) == 0 {
			ss.mu.Unlock()
			return
		}
		q := ss.queue[0]
		ss.queue = ss.queue[1:]
		ss.mu.Unlock()
		if ss.st.faults.connStalled(ss.num) {
			continue // never sent (StallOpenAcks)
		}
		for ch := ss.st.faults.stallChan(); ch != nil; ch = ss.st.faults.stallChan() {
			select {
			case <-ch:
			case <-ss.dead:
				return
			case <-ss.s.quit:
				return
			}
		}
		if wait := q.notBefore.Sub(ss.s.now()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ss.dead:
				t.Stop()
				return
			case <-ss.s.quit:
				t.Stop()
				return
			}
		}
		select {
		case <-ss.dead:
			return
		default:
		}
		q.a.At = ss.s.now()
		if err := ss.writeAck(q.a); err != nil {
			ss.s.log.Info("kvslocal: ACK write failed", "stream", ss.st.name, "err", err)
			ss.kill()
			return
		}
		ss.st.addAck(q.a)
		if q.a.EventType == EventPersisted {
			ss.st.markPersisted(q.a.FragmentNumber, q.a.At)
		}
	}
}

func ackJSON(a Ack) []byte {
	if a.EventType == EventIdle {
		return []byte(`{"EventType":"IDLE"}`)
	}
	b := fmt.Appendf(nil, `{"EventType":%q,"FragmentTimecode":%d,"FragmentNumber":%q`, a.EventType, a.FragmentTimecode, a.FragmentNumber)
	if a.EventType == EventError {
		b = fmt.Appendf(b, `,"ErrorCode":%q,"ErrorId":%d`, a.ErrorCode, a.ErrorID)
	}
	return append(b, '}')
}

func (ss *session) writeAck(a Ack) error {
	b := ackJSON(a)
	mode := ss.s.opts.AckFraming
	if mode == FramingMixed {
		mode = []Framing{FramingNewline, FramingConcatenated, FramingSplit}[ss.written%3]
	}
	ss.written++
	var parts [][]byte
	switch mode {
	case FramingNewline:
		parts = [][]byte{append(b, '\n')}
	case FramingConcatenated:
		parts = [][]byte{b}
	case FramingSplit:
		k := len(b) / 2
		parts = [][]byte{b[:k], append(b[k:len(b):len(b)], '\n')}
	}
	for _, p := range parts {
		if _, err := ss.w.Write(p); err != nil {
			return err
		}
		if err := ss.rc.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// fragmentStart implements fragmentSink: BUFFERING, throttling, faults.
func (ss *session) fragmentStart(f *fragment) error {
	o := &ss.s.opts
	if !ss.st.fragRate.allow(ss.s.now(), o.MaxFragmentsPerSecond) {
		// The quota is hard: the service does not queue fragments that
		// come too fast. How it refuses them is not documented (producers
		// that push too fast report missing ACKs); here the fragment gets
		// an ERROR, ErrorId 4000, which producers retry, so one that
		// outruns the quota sees it at once instead of a slowed body.
		return &StreamError{Code: ErrStreamRead, Msg: fmt.Sprintf("more than %g fragments per second on this stream (quota)", o.MaxFragmentsPerSecond), Timecode: f.timecode}
	}
	f.failCode, f.dropAfter = ss.st.faults.fragmentStarted(f.timecode)
	f.number = ss.s.nextFragmentNumber()
	ss.mu.Lock()
	ss.open = f
	ss.mu.Unlock()
	ss.enqueue(Ack{EventType: EventBuffering, FragmentTimecode: f.timecode, FragmentNumber: f.number}, time.Time{})
	return ss.fragmentBytes(f)
}

func (ss *session) fragmentBytes(f *fragment) error {
	if f.dropAfter >= 0 && f.number != "" && int64(len(f.raw)) >= f.dropAfter {
		ss.kill()
		if ss.conn != nil {
			_ = ss.conn.Close()
		}
		return errDropped
	}
	return nil
}

// fragmentComplete implements fragmentSink: store, then RECEIVED/PERSISTED.
func (ss *session) fragmentComplete(f *fragment, reason string) error {
	ss.mu.Lock()
	ss.open = nil
	early := f.forceAcked
	ss.mu.Unlock()
	if f.failCode != 0 {
		return &StreamError{Code: f.failCode, Msg: "injected failure", Timecode: f.timecode, Number: f.number}
	}
	fr := f.record()
	fr.Stream, fr.Connection, fr.FragmentNumber, fr.ReceivedAt = ss.st.name, ss.num, f.number, ss.s.now()
	if err := ss.store(f, &fr); err != nil {
		ss.s.log.Error("kvslocal: storing fragment failed", "stream", ss.st.name, "err", err)
		return &StreamError{Code: ErrArchival, Msg: err.Error(), Timecode: f.timecode, Number: f.number}
	}
	if err := ss.st.record(fr, ss.retention() > 0); err != nil {
		ss.s.log.Error("kvslocal: recording fragment failed", "stream", ss.st.name, "err", err)
	}
	ss.s.log.Debug("kvslocal: fragment received", "stream", ss.st.name, "timecode", f.timecode, "frames", f.frames, "bytes", len(f.raw), "why", reason)
	if !early {
		ss.enqueueReceived(f.timecode, f.number)
	}
	return nil
}

// store appends the cluster to this connection's MKV file.
func (ss *session) store(f *fragment, fr *Fragment) error {
	if ss.s.opts.Dir == "" {
		return nil
	}
	if ss.file == nil {
		dir := ss.st.dir()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		ss.fileName = filepath.Join(dir, fmt.Sprintf("conn-%04d.mkv", ss.num))
		fh, err := os.Create(ss.fileName)
		if err != nil {
			return err
		}
		ss.file = fh
		if _, err := fh.Write(ss.p.header); err != nil {
			return err
		}
	}
	fr.File = ss.fileName
	_, err := ss.file.Write(f.raw)
	return err
}

// sleep waits d unless the connection is being torn down.
func (ss *session) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ss.dead:
		return errDropped
	case <-ss.s.quit:
		return errDropped
	}
}

// bodyReader is the PutMedia body as the parser sees it: rate limited,
// slowed by faults, timing the last byte, and failing with the reason once
// the session is aborted.
type bodyReader struct {
	ss *session
	r  io.Reader
}

func (b *bodyReader) Read(p []byte) (int, error) {
	ss := b.ss
	if bps := ss.st.faults.slow(); bps > 0 {
		// Read in slices of about 50 ms worth of bytes.
		if limit := int(bps / 20); limit < len(p) {
			if limit < 1 {
				limit = 1
			}
			p = p[:limit]
		}
	}
	n, err := b.r.Read(p)
	if n > 0 {
		ss.lastByte.Store(ss.s.now().UnixNano())
		var wait time.Duration
		if bps := ss.st.faults.slow(); bps > 0 {
			wait = time.Duration(float64(n) / float64(bps) * float64(time.Second))
		}
		if w := ss.st.bandwidth.reserve(ss.s.now(), ss.s.opts.MaxBytesPerSecond, float64(n)); w > wait {
			wait = w
		}
		if wait > 0 {
			if serr := ss.sleep(wait); serr != nil && err == nil {
				err = serr
			}
		}
	}
	if err != nil {
		ss.mu.Lock()
		aerr := ss.abortErr
		ss.mu.Unlock()
		if aerr != nil {
			if errors.Is(aerr, errIdle) {
				return n, io.EOF
			}
			return n, aerr
		}
	}
	return n, err
}
