package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
)

// newLogger returns a text logger writing to w at the given level (pass a
// *slog.LevelVar to change it at run time). When w is stderr connected to
// the journal, records carry no time because journald stamps every line
// itself and a second, differently formatted time only adds noise.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if writesToJournal(w, os.Getenv("JOURNAL_STREAM")) {
		opts.ReplaceAttr = dropTime
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// writesToJournal reports whether w is the stream systemd connected to the
// journal. systemd sets JOURNAL_STREAM to "<device>:<inode>" of that
// stream; comparing it with w's own identity avoids misdetecting a child
// process whose stderr was redirected elsewhere but inherited the variable.
func writesToJournal(w io.Writer, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino) == journalStream
}
