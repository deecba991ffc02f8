// Package logging builds the daemon's slog logger. Under systemd, when
// stderr is the journal stream, records go to journald over its native
// protocol so every attribute becomes a field an operator can filter on
// (journalctl -u kvscamd STREAM=cam-0001 -p warning); elsewhere they are
// plain text lines with a time. On both paths identical warnings and errors
// that repeat within a window are folded into one "(repeated N times)"
// line, because a flapping link must not wear out an SD card, and a line
// never carries the same attribute twice.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"
)

const (
	// Identifier is the SYSLOG_IDENTIFIER of every journal entry, the name
	// journalctl -t selects and shows in front of each line.
	Identifier = "kvscamd"

	// JournalSocket is where journald listens for native-protocol
	// datagrams.
	JournalSocket = "/run/systemd/journal/socket"

	// RepeatWindow is how long an identical warning or error stays folded
	// after its first line. A minute keeps a flapping link to about one
	// line a minute while a new fault still shows at once.
	RepeatWindow = time.Minute

	// MaxTracked bounds how many distinct records the repeat limiter
	// remembers, so a stream of ever-different errors cannot grow its
	// memory. When full, the oldest is forgotten.
	MaxTracked = 32
)

// Option adjusts New or RateLimit.
type Option func(*options)

type options struct {
	socket string
	window time.Duration
	now    func() time.Time
}

func buildOptions(opts []Option) options {
	o := options{socket: JournalSocket, window: RepeatWindow, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithJournalSocket sends journal entries to path instead of
// JournalSocket, so tests can collect them on a socket of their own.
func WithJournalSocket(path string) Option {
	return func(o *options) { o.socket = path }
}

// WithRepeatWindow replaces RepeatWindow.
func WithRepeatWindow(d time.Duration) Option {
	return func(o *options) { o.window = d }
}

// WithClock replaces time.Now for the repeat limiter's window and the time
// of its summary lines.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// New returns the daemon's logger writing at the given level (pass a
// *slog.LevelVar to change it at run time). When w is the stream systemd
// connected to the journal, records are sent to journald natively, with
// text on w (without a time, which journald adds itself) as the fallback
// whenever the journal socket cannot be written. Otherwise records are
// text lines with a time on w. Both paths fold repeats (see RateLimit).
func New(w io.Writer, level slog.Leveler, opts ...Option) *slog.Logger {
	o := buildOptions(opts)
	var sink slog.Handler
	if writesToJournal(w, os.Getenv("JOURNAL_STREAM")) {
		text := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime})
		sink = newJournalHandler(o.socket, level, text)
	} else {
		sink = slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	}
	return slog.New(newScope(newLimiter(sink, o)))
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
