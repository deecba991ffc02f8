package stream

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/drivers/exec"
	"github.com/kvscamd/kvscamd/drivers/file"
	"github.com/kvscamd/kvscamd/drivers/v4l2"
)

// SourceFactory builds the frame source of one stream. global is the
// daemon's configuration (clock_sync), st the stream's table.
type SourceFactory func(global *config.Config, st config.Stream, log *slog.Logger) (drivers.Source, error)

// builtinSources are the drivers a configuration file can name.
var builtinSources = map[config.Driver]SourceFactory{
	config.DriverFile: newFileSource,
	config.DriverExec: newExecSource,
	config.DriverV4L2: newV4L2Source,
}

// newSource builds the source st's driver names, from Options.Sources
// first, then the built-in drivers.
func (s *Stream) newSource(st config.Stream) (drivers.Source, error) {
	f, ok := s.opts.Sources[st.Driver]
	if !ok {
		f, ok = builtinSources[st.Driver]
	}
	if !ok {
		var known []string
		for d := range builtinSources {
			known = append(known, string(d))
		}
		for d := range s.opts.Sources {
			known = append(known, string(d))
		}
		sort.Strings(known)
		return nil, fmt.Errorf("stream %s: unknown driver %q; use one of %s", st.Name, st.Driver, strings.Join(known, ", "))
	}
	s.mu.Lock()
	global := s.global
	s.mu.Unlock()
	src, err := f(global, st, s.log)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", st.Name, err)
	}
	return src, nil
}

// systemClock is the clock sources stamp frames with: the system clock
// under clock_sync, or under the clock.TestSyncFileEnv test hook.
func systemClock(c *config.Config) (clock.Clock, error) {
	mode, err := clock.ParseSyncMode(string(c.ClockSync))
	if err != nil {
		return nil, err
	}
	return clock.FromEnv(clock.System{Mode: mode}), nil
}

func newFileSource(c *config.Config, st config.Stream, log *slog.Logger) (drivers.Source, error) {
	clk, err := systemClock(c)
	if err != nil {
		return nil, err
	}
	return file.New(file.Config{Path: st.Path, FPS: st.FPS, Realtime: st.Realtime, Loop: st.Loop, Clock: clk, Logger: log})
}

func newExecSource(c *config.Config, st config.Stream, log *slog.Logger) (drivers.Source, error) {
	clk, err := systemClock(c)
	if err != nil {
		return nil, err
	}
	return exec.New(exec.Config{Command: st.Command, FPS: st.FPS, PTSFile: st.PTSFile, Clock: clk, Log: log})
}

func newV4L2Source(c *config.Config, st config.Stream, log *slog.Logger) (drivers.Source, error) {
	clk, err := systemClock(c)
	if err != nil {
		return nil, err
	}
	return v4l2.New(v4l2.Config{
		Device: st.Device, Width: st.Width, Height: st.Height, FPS: st.FPS,
		Bitrate: st.Bitrate, KeyframeInterval: st.KeyframeInterval.Std(),
		Clock: clk, Log: log,
	})
}
