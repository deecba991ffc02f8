package main

import (
	"io"
	"log/slog"

	"github.com/kvscamd/kvscamd/daemon/logging"
)

// newLogger returns the daemon's logger writing to w at the given level
// (pass a *slog.LevelVar to change it at run time); see logging.New for
// the journal and text paths and the folding of repeats.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return logging.New(w, level)
}
