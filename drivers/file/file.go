// Package file replays an Annex-B H.264 file as a frame source: for demos,
// tests and offline muxing. Frame k of a run is captured at start + k/fps,
// so the output's timing does not depend on how fast the file is read or
// how late a pacing timer fires: the nominal instant is the timestamp,
// which is what a smoothed pipe source approximates.
//
// Without a fixed Config.Start the replay behaves like a camera under
// clock_sync: frame k's monotonic instant is the run's monotonic start +
// k/fps, and a drivers/clock Timeline puts it on the wall clock only once
// the clock is synchronised; before that, frames go on with their
// monotonic instant only (zero Time), as every other source's do.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	dclock "github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/media"
)

// MaxFPS bounds the configured frame rate.
const MaxFPS = 240

// Config configures a file source.
type Config struct {
	Path string
	FPS  int
	// Realtime paces frames at FPS on the wall clock, like a camera, and
	// drops frames the receiver is not ready for. Without it, frames are
	// delivered as fast as the receiver takes them and none is dropped:
	// a file, unlike a camera, can wait.
	Realtime bool
	// Loop restarts at the beginning of the file at its end; timestamps
	// keep counting, so the replay looks like one long capture.
	Loop bool
	// Start stamps frame 0 on the wall clock, whatever the clock says
	// (offline muxing); zero means the replay is timed like a capture,
	// from the monotonic clock, under clock_sync (see the package doc).
	Start time.Time
	// WakeInterval is how often a realtime replay wakes to hand over the
	// frames due since it last woke: zero means drivers.WakeInterval,
	// negative once per frame.
	WakeInterval time.Duration
	// Clock paces a realtime replay and decides, through its Synced,
	// when frames get wall time; nil means the system clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Source replays a file. It implements drivers.Source.
type Source struct {
	cfg   Config
	batch uint64           // frames handed over per wake in a realtime replay
	pool  *media.FramePool // frames' memory, given back by the consumer
	drivers.Counters
}

// New checks the configuration and that the file can be read.
func New(cfg Config) (*Source, error) {
	if cfg.FPS <= 0 || cfg.FPS > MaxFPS {
		return nil, fmt.Errorf("file source %s: fps %d out of range 1..%d", cfg.Path, cfg.FPS, MaxFPS)
	}
	f, err := os.Open(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w (set path to an Annex-B H.264 file)", err)
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	if _, err := h264.SplitAnnexB(head[:n], nil); err != nil {
		return nil, fmt.Errorf("file source %s: not an Annex-B H.264 stream (%w); convert it with: ffmpeg -i IN -c:v copy -bsf:v h264_mp4toannexb -f h264 OUT.h264", cfg.Path, err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, batch: uint64(drivers.BatchFrames(cfg.WakeInterval, cfg.FPS)), pool: media.NewFramePool(media.DefaultFramePoolSize)}, nil
}

// Describe names the source.
func (s *Source) Describe() string { return "file " + s.cfg.Path }

// RequestKeyFrame is ignored: a file's key frames are where they are.
func (s *Source) RequestKeyFrame() {}

// Run replays the file until its end (or forever with Loop) or until ctx
// is cancelled, which returns nil.
func (s *Source) Run(ctx context.Context, out chan<- media.Frame) error {
	var p pacer
	if s.cfg.Start.IsZero() {
		p.tl = dclock.NewTimeline(s.cfg.Clock)
		p.mono = s.cfg.Clock.Mono()
	} else {
		p.wall = s.cfg.Start
	}
	var k uint64
	for pass := 0; ; pass++ {
		n, err := s.replay(ctx, out, &p, &k)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if !s.cfg.Loop {
			return nil
		}
		if n == 0 {
			return fmt.Errorf("file source %s: no access units to loop over", s.cfg.Path)
		}
		s.cfg.Logger.Debug("file source looping", "path", s.cfg.Path, "pass", pass+1)
	}
}

// pacer times frames: from a fixed wall start (tl nil), or from a
// monotonic start through a Timeline.
type pacer struct {
	wall time.Time
	mono time.Duration
	tl   *dclock.Timeline
}

// at returns the nominal offset of frame k from the start. Multiplying
// before dividing lands frame k on the exact millisecond even when 1/fps
// is not a whole number of them.
func (s *Source) at(k uint64) time.Duration {
	return time.Duration(k) * time.Second / time.Duration(s.cfg.FPS)
}

// wait sleeps until frame k is due in a realtime replay; false means ctx
// ended. Like a camera read once per wake interval, the replay wakes when
// the last frame of k's batch is due and hands over the whole batch, each
// frame still stamped with its own instant.
func (s *Source) wait(ctx context.Context, p *pacer, k uint64) bool {
	at := s.at((k + s.batch - 1) / s.batch * s.batch)
	var d time.Duration
	if p.tl == nil {
		d = p.wall.Add(at).Sub(s.cfg.Clock.Now())
	} else {
		d = p.mono + at - s.cfg.Clock.Mono()
	}
	return clock.Sleep(ctx, s.cfg.Clock, d) == nil
}

// replay sends one pass over the file and returns how many frames it read.
func (s *Source) replay(ctx context.Context, out chan<- media.Frame, p *pacer, k *uint64) (int, error) {
	f, err := os.Open(s.cfg.Path)
	if err != nil {
		return 0, fmt.Errorf("file source: %w", err)
	}
	defer f.Close()
	rd := h264.NewReader(f)
	rd.UsePool(s.pool)
	n := 0
	for {
		m, err := rd.NextMem()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if errors.Is(err, h264.ErrTooLarge) {
			s.CountError()
			s.cfg.Logger.Warn("file source skipped oversized data", "path", s.cfg.Path, "err", err)
			continue
		}
		if err != nil {
			return n, fmt.Errorf("file source %s: %w", s.cfg.Path, err)
		}
		fr := media.Frame{Key: h264.IsIDR(m.NALUs), Seq: *k}
		fr.Attach(m)
		if s.cfg.Realtime && !s.wait(ctx, p, *k) {
			return n, nil
		}
		if p.tl == nil {
			fr.Time = p.wall.Add(s.at(*k))
		} else {
			fr.Mono = p.mono + s.at(*k)
			fr.Time, _ = p.tl.Stamp(fr.Mono, fr.Key)
		}
		*k++
		n++
		if !s.cfg.Realtime {
			select {
			case out <- fr:
				s.Delivered(fr)
			case <-ctx.Done():
				return n, nil
			}
			continue
		}
		s.Offer(out, fr)
	}
}
