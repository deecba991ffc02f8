// Package service is the daemon: it owns the configuration in force, one
// stream per [[stream]] table, the credentials provider they share, the
// clock state, and the front-ends (the status socket today, MQTT next).
//
// Every operator action, from whichever front-end, is a Command given to
// Do; every report is built from Status. No front-end reaches into a
// stream or a stage, so there is one place that decides what a change
// does and one answer to "what is the daemon doing".
//
// Goroutines: Run starts one per stream, one for the credentials and one
// for the status socket, and returns after all have ended and every ring
// is closed. A stream restarted by a reload or a command gets a new
// goroutine; the old one has ended (its open fragment stored) first.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/daemon/stream"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/internal/backoff"
	waitclock "github.com/kvscamd/kvscamd/internal/clock"
)

// Options configure a Service beyond the configuration file.
type Options struct {
	Logger *slog.Logger
	// LogLevel, if set, is the level the logger obeys; a reload that
	// changes log_level sets it.
	LogLevel *slog.LevelVar
	// ConfigPath is the file a reload reads.
	ConfigPath string
	// Version is reported in Status.
	Version string
	// Socket is the status socket's path; empty means no socket.
	Socket string
	// SocketGroup owns the socket; see status.Server.
	SocketGroup string
	// Stream is the template of every stream's options; Logger and
	// Credentials are set by the service.
	Stream stream.Options
	// CaptureOnly runs no uploader: fragments stay in the rings.
	CaptureOnly bool
	// WrapCredentials, if set, wraps the shared credentials provider
	// before the streams see it (tests time or count Retrieve calls).
	WrapCredentials func(credentials.Provider) credentials.Provider
	// Clock reports whether the system clock is synchronised; nil means
	// the kernel's answer under clock_sync.
	Clock interface{ Synced() bool }
}

// Service runs the daemon. Create it with New and run it with Run.
type Service struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	// ready is closed once Run has started the streams and the status
	// socket answers (or has failed for good); readyOnce closes it.
	ready     chan struct{}
	readyOnce sync.Once

	mu      sync.Mutex
	cfg     *config.Config
	loaded  time.Time
	streams []*runner // in configuration order
	runCtx  context.Context
	wg      sync.WaitGroup
	creds   credentials.Provider // nil until built
	prov    *credentials.Manager
	credErr error
	lastErr *status.ErrorAt
	mqtt    *mqtt.Runner // nil while mqtt.enabled = false
	// reloadMu serialises reloads, restarts and the commands that reach
	// a stream, so that a command always lands on the stream in force
	// (not one being replaced), without holding mu while a stream stops.
	// runner.s changes only with both reloadMu and mu held.
	reloadMu sync.Mutex
}

// runner is one stream and the goroutine that runs it.
type runner struct {
	s      *stream.Stream
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

// New checks cfg with the same code as `kvscamd check` and opens every
// stream's ring. Nothing runs yet.
func New(cfg *config.Config, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.ValidateForRun(); err != nil {
		return nil, err
	}
	svc := &Service{opts: o, log: o.Logger, cfg: cfg, loaded: time.Now(), started: time.Now(), ready: make(chan struct{})}
	for _, st := range cfg.Streams {
		s, err := svc.newStream(cfg, st)
		if err != nil {
			svc.closeAll()
			return nil, err
		}
		svc.streams = append(svc.streams, &runner{s: s})
	}
	return svc, nil
}

func (svc *Service) newStream(cfg *config.Config, st config.Stream) (*stream.Stream, error) {
	o := svc.opts.Stream
	o.Logger = svc.log
	if !svc.opts.CaptureOnly {
		o.Credentials = svc.credentials
	}
	return stream.New(cfg, st, o)
}

func (svc *Service) closeAll() {
	for _, r := range svc.streams {
		r.s.Close()
	}
}

// Ready is closed once Run has started every stream and the status socket
// answers requests (or could not be opened, which is logged), or when Run
// has returned: what systemd's READY=1 should wait for, so that
// `kvscamd status` right after start reaches the daemon.
func (svc *Service) Ready() <-chan struct{} { return svc.ready }

func (svc *Service) markReady() { svc.readyOnce.Do(func() { close(svc.ready) }) }

// Streams returns the names of the streams, in configuration order.
func (svc *Service) Streams() []string {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	var names []string
	for _, r := range svc.streams {
		names = append(names, r.s.Name())
	}
	return names
}

// Run runs every stream, the credentials refresh and the status socket
// until ctx is cancelled, then stops the streams (each stores its open
// fragment) and closes their rings. Cancellation returns nil.
func (svc *Service) Run(ctx context.Context) error {
	defer svc.markReady()
	var prov *credentials.Manager
	if !svc.opts.CaptureOnly {
		// Building the provider does no I/O, so the streams' uploaders
		// normally find it ready; if it fails, runCredentials retries.
		prov = svc.buildCredentials(ctx)
	}
	svc.mu.Lock()
	svc.runCtx = ctx
	for _, r := range svc.streams {
		svc.startLocked(r)
	}
	svc.mu.Unlock()

	var side sync.WaitGroup
	sideCtx, stopSide := context.WithCancel(ctx)
	if !svc.opts.CaptureOnly {
		side.Add(1)
		go func() {
			defer side.Done()
			svc.runCredentials(sideCtx, prov)
		}()
	}
	if svc.opts.Socket != "" {
		srv := &status.Server{Path: svc.opts.Socket, Group: svc.opts.SocketGroup, Handler: svc, Logger: svc.log, Listening: svc.markReady}
		side.Add(1)
		go func() {
			defer side.Done()
			defer svc.markReady()
			if err := srv.Run(sideCtx); err != nil {
				// The daemon records without its socket: say so loudly,
				// do not stop capture.
				svc.log.Error("status socket unavailable; kvscamd status and upload will not reach this daemon", "err", err)
				svc.noteError(err)
			}
		}()
	}
	if svc.opts.Socket == "" {
		svc.markReady()
	}
	svc.mu.Lock()
	mc := svc.cfg.MQTT
	thing := svc.cfg.ThingName
	svc.mu.Unlock()
	mqttCtx, stopMQTT := context.WithCancel(ctx)
	mqttDone := make(chan struct{})
	if !mc.Enabled {
		close(mqttDone)
	} else {
		// MQTT is one more front-end: it reaches the streams only
		// through Do and Status, and its outages never stop capture.
		r := mqtt.New(mqtt.Options{Config: mc, Thing: thing, Version: svc.opts.Version, Daemon: svc, Logger: svc.log})
		svc.mu.Lock()
		svc.mqtt = r
		svc.mu.Unlock()
		go func() {
			defer close(mqttDone)
			_ = r.Run(mqttCtx)
		}()
	}
	<-ctx.Done()
	// MQTT first, so that it says "offline" before the streams stop.
	stopMQTT()
	<-mqttDone
	svc.reloadMu.Lock() // no restart may start a stream now
	svc.wg.Wait()
	svc.reloadMu.Unlock()
	stopSide()
	side.Wait()

	svc.mu.Lock()
	defer svc.mu.Unlock()
	var errs []error
	for _, r := range svc.streams {
		errs = append(errs, r.err, r.s.Close())
	}
	return errors.Join(errs...)
}

// startLocked starts r's goroutine under the run context.
func (svc *Service) startLocked(r *runner) {
	ctx, cancel := context.WithCancel(svc.runCtx)
	r.cancel, r.done = cancel, make(chan struct{})
	svc.wg.Add(1)
	go func() {
		defer svc.wg.Done()
		defer close(r.done)
		r.err = r.s.Run(ctx)
	}()
}

// credentials is every stream's CredentialsFunc.
func (svc *Service) credentials() (credentials.Provider, error) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.creds != nil {
		return svc.creds, nil
	}
	if svc.credErr != nil {
		return nil, svc.credErr
	}
	return nil, errors.New("credentials provider not built yet")
}

// buildCredentials makes the daemon's one credentials provider, or
// records why it cannot (e.g. the device certificate is missing) and
// returns nil.
func (svc *Service) buildCredentials(ctx context.Context) *credentials.Manager {
	svc.mu.Lock()
	cc := svc.cfg.CredentialsConfig()
	svc.mu.Unlock()
	p, err := credentials.New(ctx, cc, credentials.WithLogger(svc.log))
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if err != nil {
		svc.credErr = err
		return nil
	}
	var creds credentials.Provider = p
	if svc.opts.WrapCredentials != nil {
		creds = svc.opts.WrapCredentials(p)
	}
	svc.creds, svc.prov, svc.credErr = creds, p, nil
	return p
}

// runCredentials retries building the provider with back-off while it
// cannot be built, then runs its background refresh until ctx ends.
func (svc *Service) runCredentials(ctx context.Context, p *credentials.Manager) {
	bo := backoff.New(time.Second, time.Minute)
	for p == nil {
		svc.mu.Lock()
		err := svc.credErr
		svc.mu.Unlock()
		svc.log.Error("credentials cannot be set up yet; capturing meanwhile", "op", "credentials", "err", err)
		if waitclock.Sleep(ctx, waitclock.System{}, bo.Next()) != nil {
			return
		}
		p = svc.buildCredentials(ctx)
	}
	if err := p.Run(ctx); err != nil && ctx.Err() == nil {
		svc.log.Error("credentials refresh stopped", "err", err)
		svc.noteError(err)
	}
}

func (svc *Service) noteError(err error) {
	svc.mu.Lock()
	svc.lastErr = &status.ErrorAt{Message: err.Error(), Time: time.Now()}
	svc.mu.Unlock()
}

// Status returns a snapshot of the daemon; safe to call at any time.
func (svc *Service) Status() status.Status {
	svc.mu.Lock()
	cfg := svc.cfg
	streams := make([]*stream.Stream, len(svc.streams))
	for i, r := range svc.streams {
		streams[i] = r.s
	}
	prov, credErr, mr := svc.prov, svc.credErr, svc.mqtt
	st := status.Status{
		Version:   svc.opts.Version,
		Started:   svc.started,
		Uptime:    status.Duration(time.Since(svc.started).Round(time.Millisecond)),
		LastError: svc.lastErr,
		Config:    status.ConfigSummary{Path: svc.opts.ConfigPath, Loaded: svc.loaded, StateDir: cfg.StateDir},
	}
	svc.mu.Unlock()
	st.Clock = status.ClockStatus{Synchronized: svc.clockSynced(cfg), Mode: string(cfg.ClockSync)}
	st.Creds.Source = string(cfg.Credentials.Source)
	switch {
	case svc.opts.CaptureOnly:
		st.Creds.State = "not used (capture only)"
	case prov != nil:
		ps := prov.Status()
		st.Creds.State = "ok"
		st.Creds.Expires, st.Creds.NextRefresh = ps.Expires, ps.NextRefresh
		st.Creds.Refreshes, st.Creds.Failures, st.Creds.LastError = ps.Refreshes, ps.Failures, ps.LastError
		if ps.LastError != "" && ps.Fetched.IsZero() {
			st.Creds.State = "not fetched yet"
		}
	case credErr != nil:
		st.Creds.State = "not available yet: " + credErr.Error()
	default:
		st.Creds.State = "starting"
	}
	st.MQTT = status.MQTTStatus{Enabled: cfg.MQTT.Enabled, State: "disabled"}
	switch {
	case mr != nil:
		st.MQTT.State = mr.State()
	case cfg.MQTT.Enabled:
		st.MQTT.State = "starting"
	}
	for _, s := range streams {
		st.Streams = append(st.Streams, s.Status())
	}
	return st
}

func (svc *Service) clockSynced(cfg *config.Config) bool {
	if svc.opts.Clock != nil {
		return svc.opts.Clock.Synced()
	}
	mode, err := clock.ParseSyncMode(string(cfg.ClockSync))
	if err != nil {
		return false
	}
	return clock.System{Mode: mode}.Synced()
}

// find returns the runner of the stream called name.
func (svc *Service) find(name string) (*runner, error) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	var names []string
	for _, r := range svc.streams {
		if r.s.Name() == name {
			return r, nil
		}
		names = append(names, r.s.Name())
	}
	if name == "" {
		return nil, status.Errorf(status.CodeBadArgument, "no stream given; name one of: %v", names)
	}
	return nil, status.Errorf(status.CodeUnknownStream, "no stream %q in this daemon; its streams are: %v", name, names)
}

// restart stops the stream r (its open fragment is stored, its ring
// closed) and starts it again with st. Call with reloadMu held.
func (svc *Service) restart(r *runner, st config.Stream) error {
	svc.mu.Lock()
	cfg, running := svc.cfg, svc.runCtx != nil && svc.runCtx.Err() == nil
	svc.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	if err := r.s.Close(); err != nil {
		svc.log.Warn("closing the ring before the restart", "stream", r.s.Name(), "err", err)
	}
	capture := r.s.Status().Capture
	s, err := svc.newStream(cfg, st)
	if err != nil {
		// The old configuration comes back, so that capture goes on.
		old := r.s.Config()
		s2, err2 := svc.newStream(cfg, old)
		if err2 != nil {
			return fmt.Errorf("stream %s: restart failed (%v) and the old settings could not be restored: %w", st.Name, err, err2)
		}
		s = s2
		err = fmt.Errorf("stream %s: restart with the new settings failed, the old ones are back: %w", st.Name, err)
	}
	s.SetCapture(capture)
	svc.mu.Lock()
	r.s = s
	if running {
		svc.startLocked(r)
	}
	svc.mu.Unlock()
	svc.log.Info("stream restarted", "stream", st.Name)
	return err
}

var _ status.Handler = (*Service)(nil)
