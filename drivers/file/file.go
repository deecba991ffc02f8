// Package file replays an Annex-B H.264 file as a frame source: for demos,
// tests and offline muxing. Frame k of a run is stamped start + k/fps, so
// the output's timing does not depend on how fast the file is read.
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
	// Start stamps frame 0; zero means the time Run starts.
	Start time.Time
	// Clock paces a realtime replay and stamps a zero Start; nil means
	// the system clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Source replays a file. It implements drivers.Source.
type Source struct {
	cfg Config
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
	return &Source{cfg: cfg}, nil
}

// Describe names the source.
func (s *Source) Describe() string { return "file " + s.cfg.Path }

// RequestKeyFrame is ignored: a file's key frames are where they are.
func (s *Source) RequestKeyFrame() {}

// Run replays the file until its end (or forever with Loop) or until ctx
// is cancelled, which returns nil.
func (s *Source) Run(ctx context.Context, out chan<- media.Frame) error {
	start := s.cfg.Start
	if start.IsZero() {
		start = s.cfg.Clock.Now()
	}
	var k uint64
	for pass := 0; ; pass++ {
		n, err := s.replay(ctx, out, start, &k)
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

// replay sends one pass over the file and returns how many frames it read.
func (s *Source) replay(ctx context.Context, out chan<- media.Frame, start time.Time, k *uint64) (int, error) {
	f, err := os.Open(s.cfg.Path)
	if err != nil {
		return 0, fmt.Errorf("file source: %w", err)
	}
	defer f.Close()
	rd := h264.NewReader(f)
	n := 0
	for {
		au, err := rd.Next()
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
		// Multiply before dividing so that frame k lands on the exact
		// millisecond even when 1/fps is not a whole number of them.
		at := start.Add(time.Duration(*k) * time.Second / time.Duration(s.cfg.FPS))
		fr := media.Frame{NALUs: au, Time: at, Key: h264.IsIDR(au), Seq: *k}
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
		if clock.Sleep(ctx, s.cfg.Clock, at.Sub(s.cfg.Clock.Now())) != nil {
			return n, nil
		}
		s.Offer(out, fr)
	}
}
