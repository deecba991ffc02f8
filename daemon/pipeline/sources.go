package pipeline

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/drivers/exec"
	"github.com/kvscamd/kvscamd/drivers/file"
	"github.com/kvscamd/kvscamd/drivers/v4l2"
)

// SourceFactory builds the frame source of one stream. c is the whole
// configuration (for clock_sync and the like), st the stream's table.
type SourceFactory func(c *config.Config, st *config.Stream, log *slog.Logger) (drivers.Source, error)

var (
	factoriesMu sync.Mutex
	factories   = map[config.Driver]SourceFactory{
		config.DriverFile: newFileSource,
		config.DriverExec: newExecSource,
		config.DriverV4L2: newV4L2Source,
	}
)

// RegisterDriver makes NewSource build sources for driver with f,
// replacing any factory registered for it before. Tests use it to inject
// sources; new drivers add themselves here.
func RegisterDriver(driver config.Driver, f SourceFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	factories[driver] = f
}

// NewSource builds the frame source a stream's driver key names.
func NewSource(c *config.Config, st *config.Stream, log *slog.Logger) (drivers.Source, error) {
	factoriesMu.Lock()
	f, ok := factories[st.Driver]
	var known []string
	for d := range factories {
		known = append(known, string(d))
	}
	factoriesMu.Unlock()
	if !ok {
		sort.Strings(known)
		return nil, fmt.Errorf("stream %s: unknown driver %q; use one of %s", st.Name, st.Driver, strings.Join(known, ", "))
	}
	src, err := f(c, st, log)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", st.Name, err)
	}
	return src, nil
}

func systemClock(c *config.Config) (clock.Clock, error) {
	mode, err := clock.ParseSyncMode(string(c.ClockSync))
	if err != nil {
		return nil, err
	}
	return clock.System{Mode: mode}, nil
}

func newFileSource(c *config.Config, st *config.Stream, log *slog.Logger) (drivers.Source, error) {
	return file.New(file.Config{Path: st.Path, FPS: st.FPS, Realtime: st.Realtime, Loop: st.Loop, Logger: log})
}

func newExecSource(c *config.Config, st *config.Stream, log *slog.Logger) (drivers.Source, error) {
	clk, err := systemClock(c)
	if err != nil {
		return nil, err
	}
	return exec.New(exec.Config{Command: st.Command, Clock: clk, Log: log})
}

func newV4L2Source(c *config.Config, st *config.Stream, log *slog.Logger) (drivers.Source, error) {
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
