// Package exec is the frame source that runs an encoder as a child process
// (rpicam-vid, ffmpeg, gst-launch) and reads Annex-B H.264 from its stdout.
//
// The child is the camera: when it exits, for whatever reason, it is
// started again after an exponential back-off with jitter, and the exit is
// counted as a capture error. Its stderr lines go to the log. When Run's
// context ends, the child's process group gets SIGTERM and, after a grace
// period, SIGKILL, so a wedged encoder cannot keep the camera busy.
//
// A raw H.264 pipe carries no timestamps, so frames are stamped with the
// monotonic instant their access unit was complete on stdout. Encoders
// write in bursts (ffmpeg's muxer buffering, x264's frame threads), so with
// a known frame rate (Config.FPS) those arrival times are smoothed by a
// clock.FrameClock: an even grid locked to the arrivals, which keeps real
// pauses as gaps and stays within two frames of the arrivals. The
// monotonic capture time is then mapped to wall time by a clock.Mapper
// (frames go on without wall time while the clock is unsynchronised).
//
// Goroutines: Run owns the child, a stderr reader per child and the
// Mapper's delivery goroutine; all end before Run returns.
package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/backoff"
	iclock "github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/media"
)

// Defaults of Config's tuning fields.
const (
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	DefaultStopGrace  = 5 * time.Second
	// maxStderrLine truncates runaway stderr lines before logging them.
	maxStderrLine = 1024
)

// Config configures the exec source.
type Config struct {
	// Command is the argv of the encoder; it must write Annex-B H.264 to
	// stdout. Command[0] is looked up in PATH.
	Command []string
	// Clock stamps frames; nil means the system clock in clock_sync
	// "wait" mode.
	Clock clock.Clock
	// FPS is the encoder's nominal frame rate; when set, arrival times
	// are smoothed onto it (see the package documentation). 0 stamps
	// every frame at its arrival.
	FPS int
	// PTSFile, if set, is a path the command writes its own capture
	// timestamps to (see pts.go); they are preferred to arrival times.
	PTSFile string
	Log     *slog.Logger
	// MaxHoldBytes caps the frames held while the receiver is slow; 0
	// means clock.DefaultMaxHoldBytes.
	MaxHoldBytes int
	// MinBackoff and MaxBackoff bound the wait before restarting a child
	// that exited; StopGrace is the wait between SIGTERM and SIGKILL.
	MinBackoff, MaxBackoff, StopGrace time.Duration
}

// Source runs the command; create it with New.
type Source struct {
	cfg    Config
	log    *slog.Logger
	mapper *clock.Mapper
	pool   *media.FramePool // frames' memory, given back by the consumer
	errs   drivers.Counters // only its error count is used
	seq    uint64
	fc     clock.FrameClock // owned by Run's goroutine
	// ptsMissed counts a child's frames without an encoder timestamp;
	// the first is logged.
	ptsMissed int
	// arrived, if set, sees every frame's arrival time before smoothing
	// (tests compare the two).
	arrived func(time.Duration)
	running sync.Mutex // one Run at a time
}

// New validates cfg and returns the source.
func New(cfg Config) (drivers.Source, error) {
	return newSource(cfg)
}

func newSource(cfg Config) (*Source, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New(`exec: command is empty: set command = ["rpicam-vid", "-t", "0", "-o", "-"] or another program writing H.264 to stdout`)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System{Mode: clock.SyncWait}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	s := &Source{cfg: cfg, fc: clock.NewFrameClock(cfg.FPS), pool: media.NewFramePool(media.DefaultFramePoolSize)}
	s.log = cfg.Log.With("source", s.Describe())
	s.mapper = clock.NewMapper(clock.MapperConfig{Clock: cfg.Clock, MaxHoldBytes: cfg.MaxHoldBytes, Log: s.log})
	return s, nil
}

// Describe implements drivers.Source.
func (s *Source) Describe() string { return "exec " + s.cfg.Command[0] }

// RequestKeyFrame implements drivers.Source. A child process offers no
// standard way to ask for an IDR picture, so the request is ignored; the
// encoder's own GOP length bounds the wait.
func (s *Source) RequestKeyFrame() {}

// Stats implements drivers.Source.
func (s *Source) Stats() drivers.Stats {
	st := s.mapper.Stats()
	st.Errors = s.errs.Stats().Errors
	return st
}

// Run implements drivers.Source. It returns an error only when the command
// cannot be started at all (not found, not executable).
func (s *Source) Run(ctx context.Context, out chan<- media.Frame) error {
	if !s.running.TryLock() {
		return fmt.Errorf("%s: Run is already active", s.Describe())
	}
	defer s.running.Unlock()

	s.seq = 0
	// The Mapper delivers from its own goroutine, so a slow receiver never
	// stalls reading the child's stdout.
	defer s.mapper.Start(ctx, out)()

	restarts := backoff.Backoff{Min: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff}
	for first := true; ; first = false {
		started := s.cfg.Clock.Mono()
		frames, err := s.runChild(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if first && frames == 0 && isStartError(err) {
			return fmt.Errorf("exec: start %q: %w; install it or fix the command setting", s.cfg.Command[0], err)
		}
		s.errs.CountError()
		if s.cfg.Clock.Mono()-started >= drivers.HealthyRun {
			restarts.Reset()
		}
		wait := restarts.Next()
		s.log.Warn("encoder exited; restarting", "err", err, "frames", frames, "restart_in", wait)
		if iclock.Sleep(ctx, s.cfg.Clock, wait) != nil {
			return nil
		}
	}
}

func isStartError(err error) bool {
	return errors.Is(err, osexec.ErrNotFound) || errors.Is(err, os.ErrPermission) || errors.Is(err, os.ErrNotExist)
}

// runChild runs the command once, until it exits or ctx ends, and returns
// how many access units it delivered and why it ended.
func (s *Source) runChild(ctx context.Context) (frames int, err error) {
	cmd := osexec.Command(s.cfg.Command[0], s.cfg.Command[1:]...)
	// A process group of its own lets stop signals reach helpers the
	// command spawns (a shell wrapper, a pipeline). Pdeathsig kills the
	// child if the daemon dies without cleaning up, so a restarted daemon
	// finds the camera free.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("exec: stdout pipe: %w", err)
	}
	var pts *ptsReader
	var pc ptsClock
	if s.cfg.PTSFile != "" {
		if pts, err = openPTS(s.cfg.PTSFile); err != nil {
			return 0, err
		}
		defer pts.close()
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, fmt.Errorf("exec: stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	s.log.Info("encoder started", "pid", pid, "argv", strings.Join(s.cfg.Command, " "))

	exited := make(chan struct{})
	stopped := make(chan struct{})
	go func() { // stop the child when ctx ends
		defer close(stopped)
		select {
		case <-exited:
			return
		case <-ctx.Done():
		}
		syscall.Kill(-pid, syscall.SIGTERM) //nolint:errcheck // may be gone already
		t := time.NewTimer(s.cfg.StopGrace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			s.log.Warn("encoder ignored SIGTERM; killing it", "pid", pid, "grace", s.cfg.StopGrace)
			syscall.Kill(-pid, syscall.SIGKILL) //nolint:errcheck
		}
	}()
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		s.logStderr(stderr, pid)
	}()

	r := h264.NewReader(stdout)
	r.UsePool(s.pool)
	s.fc.Reset() // a new encoder run starts a new grid
	s.ptsMissed = 0
	var readErr error
	for {
		m, err := r.NextMem()
		if err != nil {
			if errors.Is(err, h264.ErrTooLarge) {
				s.log.Warn("dropping oversized access unit", "err", err)
				s.errs.CountError()
				continue
			}
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
		mono := s.cfg.Clock.Mono()
		if s.arrived != nil {
			s.arrived(mono)
		}
		stamped := false
		if pts != nil {
			if p, ok := pts.next(); ok {
				mono, stamped = pc.stamp(mono, p), true
			} else if s.ptsMissed++; s.ptsMissed == 1 {
				s.log.Warn("encoder wrote no timestamp for a frame to pts_file in time; using arrival times", "pts_file", s.cfg.PTSFile, "wait", ptsWait)
			}
		}
		if !stamped && s.cfg.FPS > 0 {
			mono = s.fc.Stamp(mono)
		}
		fr := media.Frame{Mono: mono, Key: h264.IsIDR(m.NALUs), Seq: s.seq}
		fr.Attach(m)
		s.mapper.Push(fr)
		s.seq++
		frames++
	}
	if readErr != nil {
		// The pipe broke without EOF; make sure the child does not
		// linger writing into nothing.
		syscall.Kill(-pid, syscall.SIGKILL) //nolint:errcheck
	}
	<-logged
	werr := cmd.Wait()
	close(exited)
	<-stopped
	if frames == 0 && r.Skipped() > 0 {
		s.log.Warn("encoder output is not H.264 Annex-B: no start code found; make the command write raw H.264 (ffmpeg: -f h264 -)",
			"skipped_bytes", r.Skipped())
	}
	switch {
	case readErr != nil:
		return frames, fmt.Errorf("exec: read stdout: %w", readErr)
	case werr != nil:
		return frames, fmt.Errorf("exec: %s: %w", s.cfg.Command[0], werr)
	}
	return frames, fmt.Errorf("exec: %s exited with status 0", s.cfg.Command[0])
}

// logStderr logs the child's stderr line by line. Progress output that
// rewrites one line with carriage returns is split there too.
func (s *Source) logStderr(r io.Reader, pid int) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	sc.Split(scanLines)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if len(line) > maxStderrLine {
			line = line[:maxStderrLine] + "…"
		}
		s.log.Info("encoder stderr", "pid", pid, "line", line)
	}
	// A scanner error (line over 64 KiB) leaves the pipe unread; drain it
	// so the child never blocks on a full stderr pipe.
	io.Copy(io.Discard, r) //nolint:errcheck
}

// scanLines splits at \n or \r.
func scanLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	for i, b := range data {
		if b == '\n' || b == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
