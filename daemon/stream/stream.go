// Package stream owns one camera's chain: frame source → fragmenter → ring
// buffer → sender. It builds the stages from the stream's configuration,
// runs them, restarts the one that fails, and is the only way to change
// them while they run: Apply (a new [[stream]] table), SetCapture and
// UploadRange. Status reports the chain as one plain value.
//
// Capture comes first. A failing source is restarted with back-off, a
// failing append is counted and logged and the next fragment tried, and a
// failing uploader (including one that cannot be built yet, before the
// device has credentials) is restarted: none of them stops the stream
// from capturing into its ring. On cancellation the source stops, the
// fragmenter stores the frames already captured and closes its open
// fragment into the ring; Close then closes the ring.
//
// Goroutines: Run starts four (capture, fragmenter, uploader, meter) and
// returns only when all have ended. The fragmenter goroutine alone owns
// the fragmenter; other goroutines reach it through fragCtl.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/heartbeat"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/media"
)

// Limits.
const (
	// FrameQueue is the number of frames between a source and its
	// fragmenter: a second of video at 30 fps absorbs a slow fsync; beyond
	// that the source drops frames and counts them.
	FrameQueue = 30
	// DefaultRestartMin and DefaultRestartMax bound the back-off before a
	// failed source or uploader is started again.
	DefaultRestartMin = 500 * time.Millisecond
	DefaultRestartMax = 30 * time.Second
	// appendLogEvery limits how often repeated append failures are logged.
	appendLogEvery = time.Minute
	// meterEvery is how often the measured frame rate and bitrate are
	// updated; status shows the average over the last period.
	meterEvery = 2 * time.Second
)

// CredentialsFunc returns the credentials provider the daemon shares
// between its streams, or an error saying why there is none yet (e.g. the
// device certificate is not provisioned). It is called whenever an
// uploader is (re)built.
type CredentialsFunc func() (credentials.Provider, error)

// Options configure a Stream beyond its configuration file keys.
type Options struct {
	Logger *slog.Logger
	// Credentials is nil for a stream that only captures (fragments stay
	// in the ring until something uploads them).
	Credentials CredentialsFunc
	// Sources adds or replaces source factories by driver name; the
	// built-in drivers are used for the others.
	Sources map[config.Driver]SourceFactory
	// TuneSender, if set, adjusts each sender's configuration after it
	// was filled from the file (time-outs, margins), before it is built.
	TuneSender func(*sender.Config)
	// RestartMin and RestartMax bound the restart back-off; zero means
	// the defaults.
	RestartMin, RestartMax time.Duration
	// Heartbeat, if set, gets one stage per loop (capture, fragmenter,
	// uploader) while Run runs; the watchdog is fed from it.
	Heartbeat *heartbeat.Monitor
}

// Stream is one camera's chain. Create it with New, run it with Run, and
// Close it after Run returned.
type Stream struct {
	name string
	log  *slog.Logger
	opts Options
	ring *ring.Ring
	gate *wallGate // the ring as the sender sees it
	boot fragmenter.BootID
	frag *fragmenter.Fragmenter // owned by the fragmenter goroutine

	wake     chan struct{} // capture loop: capture or source settings changed
	fragCtl  chan fragMsg
	fragDone chan struct{} // closed when the fragmenter goroutine ends
	tail     stopTail      // the source's run-on after a stop (stoptail.go)

	// Heartbeats of the three loops, set by Run before they start.
	hbCapture, hbFrag, hbUpload *heartbeat.Stage

	stored       atomic.Uint64 // fragments appended since New
	appendErrors atomic.Uint64
	lastLogged   time.Time // fragmenter goroutine only

	mu        sync.Mutex
	global    *config.Config // the daemon's configuration, read only
	cfg       config.Stream
	capture   bool
	src       drivers.Source // current source, nil until built
	srcStale  bool           // rebuild src before its next start
	cancelSrc context.CancelFunc
	retired   drivers.Stats // counters of sources replaced since New
	fragUp    bool          // the fragmenter goroutine runs and owns frag
	snd       *sender.Sender
	sndWhy    string // why there is no uploader, when there is none
	state     string
	lastErr   *status.ErrorAt
	meter     meter
}

// fragMsg asks the fragmenter goroutine to store its open fragment
// (flush) and/or to change the target fragment duration; done is closed
// when that is done.
type fragMsg struct {
	flush  bool
	target time.Duration
	done   chan struct{}
}

// New opens the stream's ring and prepares its stages. Nothing runs yet.
// global is the daemon's configuration (for clock_sync, region and the
// [kvs] table); st is the stream's own table, already validated.
func New(global *config.Config, st config.Stream, o Options) (*Stream, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RestartMin <= 0 {
		o.RestartMin = DefaultRestartMin
	}
	if o.RestartMax <= 0 {
		o.RestartMax = DefaultRestartMax
	}
	log := o.Logger.With("stream", st.Name)
	r, err := ring.Open(global.RingDir(st.Name), ring.Options{Capacity: int64(st.RingSize), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", st.Name, err)
	}
	boot := currentBoot(log)
	s := &Stream{
		name:     st.Name,
		log:      log,
		opts:     o,
		ring:     r,
		gate:     newWallGate(r, boot, log),
		boot:     boot,
		wake:     make(chan struct{}, 1),
		fragCtl:  make(chan fragMsg),
		fragDone: make(chan struct{}),
		global:   global,
		cfg:      st,
		capture:  true,
		state:    "starting",
	}
	s.frag = fragmenter.New(fragmenter.Config{
		FragmentDuration: st.KeyframeInterval.Std(),
		KeyFrames:        keyFrames{s},
		Logger:           log,
	})
	// Storage order must stay timecode order even if the clock went back
	// while the daemon was down.
	s.frag.SetFloor(wallFloor(r))
	reportUnplaced(r, log)
	// Build the source now so that a configuration the driver refuses
	// (a missing file, say) is reported before the daemon says it runs.
	src, err := s.newSource(st)
	if err != nil {
		r.Close()
		return nil, err
	}
	s.src = src
	return s, nil
}

// Name returns the stream's name.
func (s *Stream) Name() string { return s.name }

// Config returns the stream's configuration as last applied.
func (s *Stream) Config() config.Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Ring returns the stream's ring buffer.
func (s *Stream) Ring() *ring.Ring { return s.ring }

// Close closes the ring. Call it after Run returned.
func (s *Stream) Close() error { return s.ring.Close() }

// keyFrames forwards the fragmenter's key-frame requests to whichever
// source is current.
type keyFrames struct{ s *Stream }

func (k keyFrames) RequestKeyFrame() {
	k.s.mu.Lock()
	src := k.s.src
	k.s.mu.Unlock()
	if src != nil {
		src.RequestKeyFrame()
	}
}

// Run captures into the ring, and uploads from it, until ctx is
// cancelled. Before it returns, every frame the source delivered up to
// the stop point is in a fragment in the ring: on cancellation capture
// runs on until the open fragment is long enough for the service (see
// StopTailMax). Cancellation returns nil.
func (s *Stream) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.fragUp {
		s.mu.Unlock()
		return fmt.Errorf("stream %s: Run called twice", s.name)
	}
	s.fragUp = true
	s.mu.Unlock()
	hb := s.opts.Heartbeat
	s.hbCapture, s.hbFrag, s.hbUpload = hb.Register(s.name+"/capture"), hb.Register(s.name+"/fragmenter"), hb.Register(s.name+"/uploader")
	frames := make(chan media.Frame, FrameQueue)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.captureLoop(gctx, frames) })
	g.Go(func() error {
		// Not gctx: the fragmenter stores what the source already sent
		// and flushes its open fragment once frames is closed; ctx only
		// tells it where the stop tail begins.
		return s.fragLoop(frames, ctx.Done())
	})
	g.Go(func() error { return s.uploadLoop(gctx) })
	g.Go(func() error { return s.meterLoop(gctx) })
	err := g.Wait()
	fs, src := s.frag.Stats(), s.sourceStats()
	s.log.Info("stream stopped", "frames", fs.Frames, "fragments", fs.Fragments,
		"dropped_frames", src.Dropped, "append_errors", s.appendErrors.Load())
	return err
}

// SetCapture turns capture on or off. Off stops the source and stores the
// open fragment; the uploader goes on with what the ring holds. Nothing is
// written to the ring while capture is off.
func (s *Stream) SetCapture(on bool) {
	s.mu.Lock()
	changed := s.capture != on
	s.capture = on
	if !on && s.cancelSrc != nil {
		s.cancelSrc()
	}
	s.mu.Unlock()
	if changed {
		s.log.Info("capture switched", "on", on)
		s.poke()
	}
}

func (s *Stream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// UploadRange asks for the fragments overlapping [from, to) to be uploaded
// (zero times are unbounded) and returns how many fragments and bytes that
// queued. In record mode this is how recorded video reaches the cloud; in
// live mode everything is uploaded anyway and the count says what is still
// to go.
func (s *Stream) UploadRange(from, to time.Time) (fragments int, bytes int64, err error) {
	s.mu.Lock()
	snd, why := s.snd, s.sndWhy
	s.mu.Unlock()
	if snd == nil {
		if why == "" {
			why = "the uploader has not started yet"
		}
		return 0, 0, status.Errorf(status.CodeUnavailable, "stream %s: cannot upload: %s", s.name, why)
	}
	fragments, bytes, err = snd.UploadRange(from, to)
	if err != nil {
		return 0, 0, status.Errorf(status.CodeBadArgument, "stream %s: %v", s.name, err)
	}
	return fragments, bytes, nil
}

// captureLoop runs the source while capture is on, rebuilding it when its
// settings changed and restarting it with back-off when it fails. It
// closes frames when ctx ends.
func (s *Stream) captureLoop(ctx context.Context, frames chan<- media.Frame) error {
	defer close(frames)
	defer s.hbCapture.Close()
	bo := backoff.New(s.opts.RestartMin, s.opts.RestartMax)
	for {
		s.hbCapture.Beat()
		src, err := s.readySource(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.fail("source", err)
			s.pause(ctx, bo.Next())
			continue
		}
		// The source outlives ctx by the stop tail, so that the last
		// fragment is not too short to upload.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stopTail := context.AfterFunc(ctx, func() { s.stopAfterTail(cancel) })
		s.mu.Lock()
		s.cancelSrc = cancel
		s.state = "capturing"
		s.mu.Unlock()
		started := time.Now()
		// A source waits for its device by itself; it may beat through
		// the context while it works.
		s.hbCapture.Idle()
		err = src.Run(heartbeat.NewContext(sctx, s.hbCapture), frames)
		s.hbCapture.Beat()
		stopTail()
		interrupted := sctx.Err() != nil
		cancel()
		s.mu.Lock()
		s.cancelSrc = nil
		s.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		// Whatever stopped the source, the frames it captured belong in
		// the ring now, not when the next frame comes.
		s.flush()
		switch {
		case interrupted: // capture off, or new settings
		case err == nil:
			s.setState("source ended")
			s.log.Info("source ended; capture stops until the source is changed or the stream restarted", "source", src.Describe())
			s.waitWake(ctx)
		default:
			s.fail("source "+src.Describe(), err)
			s.pause(ctx, nextWait(bo, time.Since(started)))
		}
	}
}

// nextWait is the pause before the next start of a stage that ran for
// ran: a stage that had been healthy starts again from the shortest wait.
func nextWait(bo *backoff.Backoff, ran time.Duration) time.Duration {
	if ran >= drivers.HealthyRun {
		bo.Reset()
	}
	return bo.Next()
}

// readySource waits until capture is on and returns the source to run,
// building a new one first if its settings changed.
func (s *Stream) readySource(ctx context.Context) (drivers.Source, error) {
	for {
		s.mu.Lock()
		on, src, stale, cfg := s.capture, s.src, s.srcStale, s.cfg
		if !on {
			s.state = "capture off"
		}
		s.mu.Unlock()
		if !on {
			if !s.waitWake(ctx) {
				return nil, ctx.Err()
			}
			continue
		}
		if src != nil && !stale {
			return src, nil
		}
		nsrc, err := s.newSource(cfg)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.src != nil {
			s.retired = addStats(s.retired, s.src.Stats())
		}
		s.src, s.srcStale = nsrc, false
		s.mu.Unlock()
		s.log.Info("source started", "source", nsrc.Describe())
	}
}

func addStats(a, b drivers.Stats) drivers.Stats {
	return drivers.Stats{Frames: a.Frames + b.Frames, Dropped: a.Dropped + b.Dropped, Bytes: a.Bytes + b.Bytes, Errors: a.Errors + b.Errors}
}

// waitWake waits for a change of capture or source settings; false means
// ctx ended.
func (s *Stream) waitWake(ctx context.Context) bool {
	s.hbCapture.Idle()
	defer s.hbCapture.Beat()
	select {
	case <-ctx.Done():
		return false
	case <-s.wake:
		return true
	}
}

// pause waits d or until settings change, whichever is first.
func (s *Stream) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	s.hbCapture.Idle()
	defer s.hbCapture.Beat()
	select {
	case <-ctx.Done():
	case <-s.wake:
	case <-t.C:
	}
}

// flush asks the fragmenter goroutine to store its open fragment.
func (s *Stream) flush() { s.fragCommand(fragMsg{flush: true}) }

// fragCommand hands m to the fragmenter goroutine and waits until it was
// carried out. Before that goroutine starts, a new target is set directly
// (nothing else touches the fragmenter then); after it ended there is
// nothing left to do.
func (s *Stream) fragCommand(m fragMsg) {
	s.mu.Lock()
	if !s.fragUp {
		if m.target > 0 {
			s.frag.SetFragmentDuration(m.target)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	m.done = make(chan struct{})
	select {
	case s.fragCtl <- m:
		<-m.done
	case <-s.fragDone:
	}
}

// fragLoop feeds frames to the fragmenter and stores every fragment it
// completes, until frames is closed; then it stores the open fragment.
// Once stop is closed it runs the stop tail (stoptail.go).
func (s *Stream) fragLoop(frames <-chan media.Frame, stop <-chan struct{}) error {
	defer close(s.fragDone)
	defer s.hbFrag.Close()
	defer s.tail.finish()
	// push owns fr: the fragmenter copies it into the open cluster, so its
	// memory goes back to the source's pool at once.
	push := func(fr media.Frame) {
		f, ok := s.frag.Push(fr)
		fr.Release()
		if ok {
			s.store(&f)
			s.frag.Recycle(f.Cluster)
		}
	}
	tailing, ended := false, false
	// flush stores the open fragment after the frames already queued,
	// without waiting for more.
	flush := func() {
	drain:
		for {
			select {
			case fr, ok := <-frames:
				if !ok {
					break drain
				}
				push(fr)
			default:
				break drain
			}
		}
		if f, ok := s.frag.Flush(); ok {
			s.store(&f)
			s.frag.Recycle(f.Cluster)
		}
	}
	for {
		s.hbFrag.Idle()
		select {
		case fr, ok := <-frames:
			s.hbFrag.Beat()
			switch {
			case !ok:
				flush()
				return nil
			case tailing && !ended && s.tailReached():
				// The stop point: the open fragment is long enough and
				// takes every frame still to come, so no short one
				// follows it.
				ended = true
				s.frag.SetFragmentDuration(fragmenter.MaxFragmentDuration)
				s.tail.finish()
				push(fr)
			default:
				push(fr)
			}
		case <-stop:
			stop, tailing = nil, true
		case m := <-s.fragCtl:
			s.hbFrag.Beat()
			if m.flush {
				flush()
			}
			if m.target > 0 {
				s.frag.SetFragmentDuration(m.target)
			}
			close(m.done)
		}
	}
}

// store appends a fragment to the ring. A failure is counted and logged,
// not returned: the fragmenter must keep going, so that capture resumes as
// soon as the ring can take data again (e.g. when disk space returns).
func (s *Stream) store(f *fragmenter.Fragment) {
	f.Boot = s.boot
	_, err := s.ring.Append(f)
	if err == nil {
		s.stored.Add(1)
		if !f.WallUnknown && f.Mono > 0 {
			s.gate.learn(f.Timecode - f.Mono.Milliseconds())
		}
		return
	}
	n := s.appendErrors.Add(1)
	s.noteError(fmt.Errorf("store fragment: %w", err))
	if now := time.Now(); now.Sub(s.lastLogged) >= appendLogEvery || n == 1 {
		s.lastLogged = now
		s.log.Error("fragment not stored; video lost", "fragment_timecode", f.Timecode, "frames", f.Frames, "err", err, "failed_appends", n)
	}
}

// uploadLoop builds the sender and runs it, restarting it with back-off
// when it fails or cannot be built.
func (s *Stream) uploadLoop(ctx context.Context) error {
	defer s.hbUpload.Close()
	if s.opts.Credentials == nil {
		s.mu.Lock()
		s.sndWhy = "no uploader configured (capture only)"
		s.mu.Unlock()
		return nil
	}
	bo := backoff.New(s.opts.RestartMin, s.opts.RestartMax)
	for {
		s.hbUpload.Beat()
		snd, err := s.sender()
		if err != nil {
			s.mu.Lock()
			s.sndWhy = err.Error()
			s.mu.Unlock()
			s.fail("uploader", err)
			s.hbUpload.Idle()
			if clock.Sleep(ctx, clock.System{}, bo.Next()) != nil {
				return nil
			}
			continue
		}
		started := time.Now()
		// The sender waits on the network with its own time-outs; it may
		// beat through the context while it works.
		s.hbUpload.Idle()
		err = snd.Run(heartbeat.NewContext(ctx, s.hbUpload))
		s.hbUpload.Beat()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped by itself")
		}
		s.fail("uploader", err)
		s.hbUpload.Idle()
		if clock.Sleep(ctx, clock.System{}, nextWait(bo, time.Since(started))) != nil {
			return nil
		}
	}
}

// sender returns the stream's sender, building it on first use.
func (s *Stream) sender() (*sender.Sender, error) {
	s.mu.Lock()
	snd, cfg, global := s.snd, s.cfg, s.global
	s.mu.Unlock()
	if snd != nil {
		return snd, nil
	}
	creds, err := s.opts.Credentials()
	if err != nil {
		return nil, fmt.Errorf("uploads cannot start yet (capturing into the ring meanwhile): %w", err)
	}
	sc := SenderConfig(global, cfg)
	sc.Ring, sc.Credentials, sc.Logger = s.gate, creds, s.log
	if s.opts.TuneSender != nil {
		s.opts.TuneSender(&sc)
	}
	snd, err = sender.New(sc)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Settings applied while it was being built win.
	if err := applySenderSettings(snd, s.cfg); err != nil {
		return nil, err
	}
	s.snd, s.sndWhy = snd, ""
	return snd, nil
}

func applySenderSettings(snd *sender.Sender, st config.Stream) error {
	if err := snd.SetRateLimit(int64(st.UploadRateLimit)); err != nil {
		return err
	}
	return snd.SetMode(string(st.Mode))
}

// SetAsideFileName is the file in a stream's ring directory that keeps
// the fragments the sender set aside across restarts.
const SetAsideFileName = "setaside.json"

// SenderConfig maps the configuration file's keys for one [[stream]] onto
// a sender Config. The caller adds what the file does not hold: Ring,
// Credentials and Logger.
//
//	region                   -> Region
//	kvs.endpoint             -> ControlEndpoint
//	kvs.create_stream        -> CreateStream
//	kvs.retention            -> Retention
//	stream.name              -> Stream
//	stream.mode              -> Mode
//	stream.upload_rate_limit -> RateLimit
//	stream.upload_order      -> UploadOrder
//	stream.max_live_lag      -> MaxLiveLag
//	(ring directory)         -> SetAsideFile
func SenderConfig(c *config.Config, st config.Stream) sender.Config {
	return sender.Config{
		UploadOrder:     string(st.UploadOrder),
		MaxLiveLag:      st.MaxLiveLag.Std(),
		SetAsideFile:    filepath.Join(c.RingDir(st.Name), SetAsideFileName),
		Stream:          st.Name,
		Region:          c.Region,
		ControlEndpoint: c.KVS.Endpoint,
		CreateStream:    c.KVS.CreateStream,
		Retention:       c.KVS.Retention.Std(),
		RateLimit:       int64(st.UploadRateLimit),
		Mode:            string(st.Mode),
		// The last fragment reaches the ring up to StopTailMax after a
		// stop; it should still go out on the open connection.
		ShutdownGrace: StopTailMax + time.Second,
	}
}

func (s *Stream) setState(st string) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

// fail records and logs a stage failure.
func (s *Stream) fail(stage string, err error) {
	s.noteError(fmt.Errorf("%s: %w", stage, err))
	s.log.Error("stage failed; restarting", "stage", stage, "err", err)
}

func (s *Stream) noteError(err error) {
	s.mu.Lock()
	s.lastErr = &status.ErrorAt{Message: err.Error(), Time: time.Now()}
	s.mu.Unlock()
}
