// Package pipeline wires kvscamd's stages for every configured stream:
// frame source → fragmenter → ring buffer, and, when one is plugged in, an
// uploader that drains the ring. Each stage is a Run(ctx) error under one
// errgroup per stream.
//
// Capture comes first. A failing source is restarted with back-off, a
// failing append is counted and logged and the next fragment tried, and an
// uploader's failure (including failing to build it, e.g. before the device
// certificate is provisioned) is logged and the uploader restarted: none
// of them stops the stream from capturing into its ring. On cancellation (SIGTERM)
// the source stops, the fragmenter drains the frames already captured and
// closes its open fragment into the ring, and only then the ring is closed.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/media"
)

// Limits.
const (
	// FrameQueue is the number of frames between a source and its
	// fragmenter: a second of video at 30 fps absorbs a slow fsync; beyond
	// that the source drops frames and counts them.
	FrameQueue = 30
	// minRestart and maxRestart bound the back-off before a failed source
	// or uploader is started again.
	minRestart = 500 * time.Millisecond
	maxRestart = 30 * time.Second
	// appendLogEvery limits how often repeated append failures are logged.
	appendLogEvery = time.Minute
)

// Uploader drains one stream's ring (the sender). Run returns nil when ctx
// is cancelled; an error is logged and Run is called again after a pause.
type Uploader interface {
	Run(ctx context.Context) error
}

// UploaderFactory builds the uploader of one stream over its ring.
type UploaderFactory func(c *config.Config, st *config.Stream, r *ring.Ring, log *slog.Logger) (Uploader, error)

// Options configure a Pipeline.
type Options struct {
	Logger *slog.Logger
	// Uploader, if not nil, is called once per stream; nil runs capture
	// only (fragments stay in the ring until something uploads them).
	Uploader UploaderFactory
}

// RingDir returns the directory of a stream's ring buffer.
func RingDir(c *config.Config, stream string) (string, error) {
	if stream == "" || stream == "." || stream == ".." || filepath.Base(stream) != stream {
		return "", fmt.Errorf("stream name %q cannot name a directory below state_dir; use letters, digits, '_', '.' and '-'", stream)
	}
	return filepath.Join(c.StateDir, stream), nil
}

// Pipeline runs every configured stream.
type Pipeline struct {
	streams []*Stream
}

// Stream is one camera's chain.
type Stream struct {
	Name     string
	Source   drivers.Source
	Ring     *ring.Ring
	Uploader Uploader // may be nil

	frag         *fragmenter.Fragmenter
	log          *slog.Logger
	appendErrors atomic.Uint64
	lastLogged   time.Time
}

// New opens every stream's ring and builds its stages. Nothing runs yet.
func New(c *config.Config, o Options) (*Pipeline, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Pipeline{}
	for i := range c.Streams {
		st := &c.Streams[i]
		s, err := newStream(c, st, o, log.With("stream", st.Name))
		if err != nil {
			p.Close()
			return nil, err
		}
		p.streams = append(p.streams, s)
	}
	return p, nil
}

func newStream(c *config.Config, st *config.Stream, o Options, log *slog.Logger) (*Stream, error) {
	dir, err := RingDir(c, st.Name)
	if err != nil {
		return nil, err
	}
	src, err := NewSource(c, st, log)
	if err != nil {
		return nil, err
	}
	r, err := ring.Open(dir, ring.Options{Capacity: int64(st.RingSize), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", st.Name, err)
	}
	s := &Stream{
		Name:   st.Name,
		Source: src,
		Ring:   r,
		log:    log,
		frag: fragmenter.New(fragmenter.Config{
			FragmentDuration: st.KeyframeInterval.Std(),
			KeyFrames:        src,
			Logger:           log,
		}),
	}
	if o.Uploader != nil {
		if s.Uploader, err = o.Uploader(c, st, r, log); err != nil {
			// Capture must not wait for upload to be possible (e.g. a
			// device certificate not provisioned yet): keep trying to build
			// the uploader, with back-off, while the ring fills.
			log.Error("uploads for this stream cannot start yet; capturing into the ring meanwhile", "err", err)
			s.Uploader = &lateUploader{build: func() (Uploader, error) { return o.Uploader(c, st, r, log) }}
		}
	}
	return s, nil
}

// lateUploader builds its uploader when it first runs; a failure is
// returned to the restart loop, which tries again after a pause.
type lateUploader struct {
	build func() (Uploader, error)
	u     Uploader
}

func (l *lateUploader) Run(ctx context.Context) error {
	if l.u == nil {
		u, err := l.build()
		if err != nil {
			return fmt.Errorf("uploader: %w", err)
		}
		l.u = u
	}
	return l.u.Run(ctx)
}

// Streams returns the pipeline's streams.
func (p *Pipeline) Streams() []*Stream { return p.streams }

// Run runs every stream until ctx is cancelled, then stops them cleanly
// and closes the rings. Cancellation returns nil.
func (p *Pipeline) Run(ctx context.Context) error {
	g := new(errgroup.Group)
	for _, s := range p.streams {
		g.Go(func() error { return s.Run(ctx) })
	}
	return errors.Join(g.Wait(), p.Close())
}

// Close closes every ring. Run does it itself.
func (p *Pipeline) Close() error {
	var errs []error
	for _, s := range p.streams {
		errs = append(errs, s.Ring.Close())
	}
	return errors.Join(errs...)
}

// Run captures into the ring (and uploads, with an uploader) until ctx is
// cancelled. Before it returns, every frame the source delivered is in a
// fragment in the ring.
func (s *Stream) Run(ctx context.Context) error {
	frames := make(chan media.Frame, FrameQueue)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(frames)
		return s.runSource(gctx, frames)
	})
	g.Go(func() error {
		// Not gctx: the fragmenter drains what the source already sent and
		// flushes its open fragment once frames is closed.
		return s.frag.Run(context.WithoutCancel(ctx), frames, s.store)
	})
	if s.Uploader != nil {
		g.Go(func() error { return s.restarting(gctx, "uploader", s.Uploader.Run) })
	}
	err := g.Wait()
	fs := s.frag.Stats()
	s.log.Info("stream stopped", "frames", fs.Frames, "fragments", fs.Fragments,
		"dropped_frames", s.Source.Stats().Dropped, "append_errors", s.appendErrors.Load())
	return err
}

// runSource runs the source, restarting it after failures. A source that
// ends by itself (a file without loop) ends capture for this run.
func (s *Stream) runSource(ctx context.Context, frames chan<- media.Frame) error {
	return s.restarting(ctx, "source "+s.Source.Describe(), func(ctx context.Context) error {
		return s.Source.Run(ctx, frames)
	})
}

// restarting runs fn until it returns nil or ctx ends, restarting it with
// back-off after errors.
func (s *Stream) restarting(ctx context.Context, what string, fn func(context.Context) error) error {
	delay := minRestart
	for {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		s.log.Error("stage failed; restarting", "stage", what, "err", err, "in", delay)
		if clock.Sleep(ctx, clock.System{}, delay) != nil {
			return nil
		}
		delay = min(2*delay, maxRestart)
	}
}

// store appends a fragment to the ring. A failure is counted and logged,
// not returned: the fragmenter must keep going, so that capture resumes as
// soon as the ring can take data again (e.g. when disk space returns).
func (s *Stream) store(f *fragmenter.Fragment) error {
	_, err := s.Ring.Append(f)
	if err == nil {
		return nil
	}
	n := s.appendErrors.Add(1)
	if now := time.Now(); now.Sub(s.lastLogged) >= appendLogEvery || n == 1 {
		s.lastLogged = now
		s.log.Error("fragment not stored; video lost", "time", f.Time(), "frames", f.Frames, "err", err, "failed_appends", n)
	}
	return nil
}
