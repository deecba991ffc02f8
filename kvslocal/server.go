package kvslocal

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/kvs"
)

// Service limits (KVS quotas, see the package documentation). Options
// override them so tests can reach them quickly. Those the daemon depends
// on come from package kvs, so that the sender and this endpoint cannot
// disagree about them.
const (
	DefaultRegion                = "us-west-2"
	DefaultMaxClockSkew          = 5 * time.Minute
	DefaultIdleTimeout           = kvs.IdleTimeout
	DefaultIdleAckInterval       = 3 * time.Second
	DefaultMaxConnectionDuration = kvs.MaxConnectionAge
	// DefaultMinFragmentDuration and DefaultMaxFragmentDuration are the
	// service's hard limits (quotas page, PutMedia: 1 s and 20 s).
	DefaultMinFragmentDuration   = kvs.MinFragmentDuration
	DefaultMaxFragmentDuration   = kvs.MaxFragmentDuration
	DefaultMaxFragmentSize       = kvs.MaxFragmentBytes
	DefaultMaxFragmentsPerSecond = kvs.MaxFragmentsPerSecond
	DefaultMaxBytesPerSecond     = kvs.MaxBytesPerSecond
	DefaultPutMediaCallsPerSec   = kvs.MaxConnectsPerSecond
	DefaultControlCallsPerSec    = 5
	DefaultMaxTracks             = kvs.MaxTracks
	DefaultMaxFragmentMetadata   = 10
	DefaultMaxFutureTimestamp    = 10 * time.Second
	// DefaultPersistDelay between RECEIVED and PERSISTED: the service
	// persists a fragment in a fraction of a second, never at once, so a
	// producer that counts on PERSISTED following RECEIVED in the same
	// read fails here too.
	DefaultPersistDelay = 300 * time.Millisecond

	// accountID appears in the ARNs the server makes up.
	accountID = "123456789012"
)

// Options configure a Server. The zero value gives the service's limits on
// 127.0.0.1 with a random port, in-memory only.
type Options struct {
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Region requests must be signed for; empty accepts any region.
	Region string
	// Dir receives per-stream MKV files and fragments.jsonl; empty keeps
	// everything in memory only.
	Dir string
	// Logger; default discards.
	Logger *slog.Logger
	// Now is the server's clock; default time.Now.
	Now func() time.Time

	// AccessKeyID/SecretAccessKey is a long-lived key pair the server
	// accepts; generated when empty.
	AccessKeyID, SecretAccessKey string
	// AcceptUnsignedPayload lets PutMedia be signed with UNSIGNED-PAYLOAD,
	// which the service is not known to accept.
	AcceptUnsignedPayload bool
	// MaxClockSkew between X-Amz-Date and the server clock (default 5 min,
	// the window the service reports in its "Signature expired" message).
	MaxClockSkew time.Duration

	// IdleTimeout closes a PutMedia connection that sent no bytes for this
	// long (default 30 s); IdleAckInterval is the period of IDLE events
	// while no bytes arrive (default 3 s).
	IdleTimeout, IdleAckInterval time.Duration
	// MaxConnectionDuration ends a PutMedia connection with ERROR 4003
	// (default 45 min).
	MaxConnectionDuration time.Duration
	// MaxFragmentDuration (default 20 s) and MaxFragmentSize (default
	// 50 MB) give ERROR 4002 and 4001.
	MaxFragmentDuration time.Duration
	MaxFragmentSize     int64
	// MinFragmentDuration (default 1 s, negative disables) gives ERROR
	// 4002 with ErrorCode MIN_FRAGMENT_DURATION_REACHED. A fragment's
	// duration runs from its start to the next fragment's start on the
	// connection, and may be 5 % short (capture jitter); the last one of
	// a connection is measured from its frames (last frame start plus
	// the average interval) and refused only under three quarters of the
	// minimum; a one-frame fragment at the end of a connection is not
	// checked.
	MinFragmentDuration time.Duration
	// MaxFutureTimestamp: a fragment stamped further ahead of the server
	// clock gets ERROR 4007 (default 10 s; negative disables the check).
	MaxFutureTimestamp time.Duration
	// MaxFragmentsPerSecond (default 5) refuses a fragment that starts
	// when a bucket of one second's fragments is empty (ERROR 4000);
	// MaxBytesPerSecond (default 12.5 MB/s) slows the body down, as a
	// saturated link would. Negative disables either.
	MaxFragmentsPerSecond float64
	MaxBytesPerSecond     float64
	// PutMediaCallsPerSecond and ControlCallsPerSecond per stream before
	// ClientLimitExceededException (defaults 5; negative disables).
	PutMediaCallsPerSecond float64
	ControlCallsPerSecond  float64
	// MaxTracks (default 3, ERROR 4012) and MaxFragmentMetadata tags per
	// fragment (default 10, ERROR 4009).
	MaxTracks           int
	MaxFragmentMetadata int

	// AckFraming decides how ACK objects are laid out on the wire
	// (default FramingMixed).
	AckFraming Framing
	// PersistDelay is the wait between RECEIVED and PERSISTED (default
	// DefaultPersistDelay; negative: none).
	PersistDelay time.Duration
	// AckOpenFragmentAfter, when > 0, acknowledges the open fragment once
	// the producer has sent no bytes for this long. The service does not
	// do this (it waits for the next cluster, an end-of-fragment tag or the
	// end of the body); it exists so official producers that wait for the
	// last PERSISTED before closing the body can be run against the server.
	AckOpenFragmentAfter time.Duration
	// TLS serves HTTPS with a self-signed certificate (see CACertPEM);
	// HTTP/1.1 only, as PutMedia's full-duplex streaming needs.
	TLS bool
	// SeparateDataEndpoint serves PutMedia on a second listener (DataURL)
	// and answers PutMedia on the control endpoint with 400
	// InvalidEndpointException, as the service does, so a client that
	// skips GetDataEndpoint fails here too.
	SeparateDataEndpoint bool
	// ReplaceOpenConnection makes a second PutMedia on a stream end the
	// open one (dropped without an ACK, as if the network cut it) and
	// take its place, which is what the 2020 documentation described
	// ("the last connection is accepted"). The default follows the
	// current quotas page: the newer connection is refused with
	// ConnectionLimitExceededException. Producers should work under
	// both.
	ReplaceOpenConnection bool
	// AutoCreateStreams creates a stream with 24 h retention on first
	// PutMedia/GetDataEndpoint instead of answering 404.
	AutoCreateStreams bool
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	deff := func(d *float64, v float64) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AccessKeyID == "" {
		o.AccessKeyID = randomString("AKIA", 16, upperDigits)
	}
	if o.SecretAccessKey == "" {
		o.SecretAccessKey = randomString("", 40, secretChars)
	}
	def(&o.MaxClockSkew, DefaultMaxClockSkew)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.IdleAckInterval, DefaultIdleAckInterval)
	def(&o.MaxConnectionDuration, DefaultMaxConnectionDuration)
	def(&o.MaxFragmentDuration, DefaultMaxFragmentDuration)
	def(&o.MinFragmentDuration, DefaultMinFragmentDuration)
	def(&o.PersistDelay, DefaultPersistDelay)
	def(&o.MaxFutureTimestamp, DefaultMaxFutureTimestamp)
	if o.MaxFragmentSize == 0 {
		o.MaxFragmentSize = DefaultMaxFragmentSize
	}
	deff(&o.MaxFragmentsPerSecond, DefaultMaxFragmentsPerSecond)
	deff(&o.MaxBytesPerSecond, DefaultMaxBytesPerSecond)
	deff(&o.PutMediaCallsPerSecond, DefaultPutMediaCallsPerSec)
	deff(&o.ControlCallsPerSecond, DefaultControlCallsPerSec)
	if o.MaxTracks == 0 {
		o.MaxTracks = DefaultMaxTracks
	}
	if o.MaxFragmentMetadata == 0 {
		o.MaxFragmentMetadata = DefaultMaxFragmentMetadata
	}
}

// Server is a local Kinesis Video Streams endpoint: control plane and
// PutMedia on one HTTP listener. All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL, e.g. "http://127.0.0.1:41234"; it is both the
	// control-plane endpoint and the DataEndpoint GetDataEndpoint returns.
	URL string
	// DataURL is what GetDataEndpoint returns: URL, or a second listener
	// with Options.SeparateDataEndpoint.
	DataURL string

	opts  Options
	log   *slog.Logger
	creds *credStore

	mu       sync.Mutex
	addr     string // fixed after the first listen, so a restart reuses it
	dataAddr string
	srvs     []*http.Server
	conns    map[net.Conn]struct{}
	streams  map[string]*stream
	down     downState
	closed   bool
	deleted  []*stream
	quit     chan struct{} // closed by Close
	cert     *tls.Certificate
	certPEM  []byte

	wg          sync.WaitGroup // PutMedia sessions
	fragSeq     atomic.Int64
	requestID   atomic.Int64
	clockOffset atomic.Int64 // ns added to Options.Now (SetClockOffset)
}

type connKey struct{}

// New makes a server; call Start to listen.
func New(o Options) *Server {
	o.setDefaults()
	s := &Server{
		opts:    o,
		log:     o.Logger,
		creds:   newCredStore(),
		conns:   map[net.Conn]struct{}{},
		streams: map[string]*stream{},
		quit:    make(chan struct{}),
	}
	s.creds.add(o.AccessKeyID, &credential{secret: o.SecretAccessKey})
	return s
}

// Start makes a server for a test: it listens at once, stores files under
// tb.TempDir() unless o.Dir is set, and is closed by tb.Cleanup.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	var tw *tbWriter
	if o.Logger == nil {
		// Shown only for failing tests or with -v.
		tw = &tbWriter{tb: tb}
		o.Logger = slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := New(o)
	if err := s.Start(); err != nil {
		tb.Fatalf("kvslocal: %v", err)
	}
	tb.Cleanup(func() {
		s.Close()
		if tw != nil {
			tw.stop()
		}
	})
	return s
}

// tbWriter sends log lines to a test's log until the test cleans up;
// handlers that finish later (after Close) must not log into a finished
// test, which would panic.
type tbWriter struct {
	mu      sync.Mutex
	tb      testing.TB
	stopped bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// Start listens on Options.Addr and serves in the background.
func (s *Server) Start() error {
	if s.opts.Dir != "" {
		if err := os.MkdirAll(s.opts.Dir, 0o755); err != nil {
			return fmt.Errorf("kvslocal: storage dir: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenLocked()
}

func (s *Server) listenLocked() error {
	addr := s.addr
	if addr == "" {
		addr = s.opts.Addr
	}
	url, hs, err := s.serveLocked(&s.addr, addr, s)
	if err != nil {
		return err
	}
	s.URL = url
	s.srvs = []*http.Server{hs}
	s.DataURL = s.URL
	if s.opts.SeparateDataEndpoint {
		daddr := s.dataAddr
		if daddr == "" {
			// Same host as the control endpoint, any port.
			host, _, err := net.SplitHostPort(s.addr)
			if err != nil {
				host = "127.0.0.1"
			}
			daddr = net.JoinHostPort(host, "0")
		}
		durl, dhs, err := s.serveLocked(&s.dataAddr, daddr, dataPlane{s})
		if err != nil {
			_ = hs.Close()
			return err
		}
		s.DataURL = durl
		s.srvs = append(s.srvs, dhs)
	}
	s.log.Info("kvslocal listening", "url", s.URL, "data_url", s.DataURL)
	return nil
}

// serveLocked listens on addr (remembering the bound address in *keep)
// and serves h there.
func (s *Server) serveLocked(keep *string, addr string, h http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("kvslocal: listen %s: %w", addr, err)
	}
	*keep = ln.Addr().String()
	url := "http://" + *keep
	if s.opts.TLS {
		if s.cert == nil {
			var extra []net.IP
			if host, _, err := net.SplitHostPort(*keep); err == nil {
				if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
					extra = append(extra, ip)
				}
			}
			cert, pemBytes, err := selfSigned(s.now(), extra)
			if err != nil {
				ln.Close()
				return "", nil, err
			}
			s.cert, s.certPEM = &cert, pemBytes
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*s.cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
		url = "https://" + *keep
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: s.trackConn,
	}
	go func() { _ = hs.Serve(ln) }()
	return url, hs, nil
}

// dataPlane serves the separate data endpoint: PutMedia only.
type dataPlane struct{ s *Server }

func (d dataPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := d.s
	reqID := s.newRequestID()
	setDate(w.Header(), s.now())
	if s.isDown503() {
		writeAPIError(w, reqID, &apiError{http.StatusServiceUnavailable, excServiceUnavailable, "Service Unavailable"})
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/putMedia" {
		s.handlePutMedia(w, r, reqID)
		return
	}
	writeAPIError(w, reqID, &apiError{http.StatusNotFound, excUnknownOperation, "the data endpoint serves only POST /putMedia; send control-plane calls to the control endpoint"})
}

func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// Close stops the listener, drops every connection and waits for PutMedia
// sessions to finish their bookkeeping.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.quit)
	if s.down.timer != nil {
		s.down.timer.Stop()
	}
	srvs := s.srvs
	s.srvs = nil
	s.mu.Unlock()
	s.closeListeners(srvs)
	s.wg.Wait()
	s.mu.Lock()
	for _, st := range s.streams {
		st.closeFiles()
	}
	s.mu.Unlock()
}

func (s *Server) now() time.Time { return s.opts.Now().Add(time.Duration(s.clockOffset.Load())) }

func (s *Server) newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d", hex.EncodeToString(b[:]), s.requestID.Add(1))
}

// ServeHTTP routes control-plane and data-plane calls.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := s.newRequestID()
	setDate(w.Header(), s.now())
	if s.isDown503() {
		writeAPIError(w, reqID, &apiError{http.StatusServiceUnavailable, excServiceUnavailable, "Service Unavailable"})
		return
	}
	if r.Method != http.MethodPost {
		writeAPIError(w, reqID, &apiError{http.StatusMethodNotAllowed, excUnknownOperation, "only POST is served"})
		return
	}
	if r.URL.Path == "/putMedia" {
		if s.opts.SeparateDataEndpoint {
			w.Header().Set("Connection", "close")
			writeAPIError(w, reqID, &apiError{http.StatusBadRequest, excInvalidEndpoint, "PutMedia must go to the endpoint GetDataEndpoint returns for APIName PUT_MEDIA"})
			return
		}
		s.handlePutMedia(w, r, reqID)
		return
	}
	op, ok := controlOps[r.URL.Path]
	if !ok {
		writeAPIError(w, reqID, &apiError{http.StatusNotFound, excUnknownOperation, "unknown operation " + r.URL.Path})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
	if err != nil || len(body) > maxControlBody {
		writeAPIError(w, reqID, errInvalidArg("request body unreadable or larger than %d bytes", maxControlBody))
		return
	}
	hash := sha256Hex(body)
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != hash {
		writeAPIError(w, reqID, &apiError{http.StatusBadRequest, excInvalidSignature, "The provided 'x-amz-content-sha256' header does not match what was computed."})
		return
	}
	if _, aerr := s.verify(r, hash); aerr != nil {
		s.log.Info("kvslocal: rejected", "op", r.URL.Path, "type", aerr.Type, "msg", aerr.Message)
		writeAPIError(w, reqID, aerr)
		return
	}
	resp, aerr := op(s, body)
	if aerr != nil {
		s.log.Info("kvslocal: control-plane error", "op", r.URL.Path, "type", aerr.Type, "msg", aerr.Message)
		writeAPIError(w, reqID, aerr)
		return
	}
	writeJSON(w, reqID, resp)
}

// closeListeners stops the given HTTP servers and then drops every open
// connection, hijacked PutMedia bodies included, which Server.Close alone
// leaves running. Call it without s.mu held.
func (s *Server) closeListeners(srvs []*http.Server) {
	for _, hs := range srvs {
		_ = hs.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
}
