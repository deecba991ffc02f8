package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimit wraps next so that identical warnings and errors (same level,
// message and attributes; the time does not count) repeated within the
// window (RepeatWindow unless WithRepeatWindow says otherwise) are written
// once. The suppressed copies are accounted for by one line
// "<message> (repeated N times)" with the attribute repeated=N, N being the
// number of copies not written, which comes before the next record that
// is written, or when the window ends. Records below warn level pass
// untouched. The returned handler is safe for concurrent use; attributes
// and groups from Logger.With and WithGroup reach next on every record,
// folded in, and a key given twice is kept once (the last value).
func RateLimit(next slog.Handler, opts ...Option) slog.Handler {
	return newScope(newLimiter(next, buildOptions(opts)))
}

// limiter folds repeats of the whole records that scope hands it.
type limiter struct {
	next   slog.Handler
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	tracked []*repeat // at most MaxTracked, oldest first
	timer   *time.Timer
	due     time.Time // by the limiter's clock, when timer fires
}

// repeat is one record the limiter has let through and is now folding.
type repeat struct {
	key        string
	first      time.Time   // when it was let through; the window starts here
	record     slog.Record // the copy the summary repeats
	suppressed int         // copies not written since the last summary
}

func newLimiter(next slog.Handler, o options) *limiter {
	return &limiter{next: next, window: o.window, now: o.now}
}

func (l *limiter) Enabled(ctx context.Context, lv slog.Level) bool {
	return l.next.Enabled(ctx, lv)
}

// WithAttrs and WithGroup are only reached when a limiter is used without
// its scope; they keep the limiter's identity intact by wrapping a fresh
// one, which is correct if less thrifty.
func (l *limiter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return newScope(l).WithAttrs(attrs)
}

func (l *limiter) WithGroup(name string) slog.Handler {
	return newScope(l).WithGroup(name)
}

func (l *limiter) Handle(ctx context.Context, r slog.Record) error {
	// The lock is held while writing so that a summary is never
	// overtaken by the record that caused it.
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	errs := l.expire(ctx, now)

	if r.Level >= slog.LevelWarn {
		key := recordKey(r)
		for _, t := range l.tracked {
			if t.key == key {
				t.suppressed++
				l.armTimer(now, t.first.Add(l.window))
				return nil
			}
		}
		// A different record: what was folded so far happened before it,
		// so say so first.
		errs = append(errs, l.flushAll(ctx, now)...)
		if len(l.tracked) == MaxTracked {
			// flushAll left nothing suppressed, so forgetting the oldest
			// loses no line, only the chance to fold its next copy.
			l.tracked = append(l.tracked[:0], l.tracked[1:]...)
		}
		l.tracked = append(l.tracked, &repeat{key: key, first: now, record: r.Clone()})
	} else {
		errs = append(errs, l.flushAll(ctx, now)...)
	}
	if err := l.next.Handle(ctx, r); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// expire writes the summaries of records whose window has passed and
// forgets them, so their next copy is written as new.
func (l *limiter) expire(ctx context.Context, now time.Time) []error {
	var errs []error
	kept := l.tracked[:0]
	for _, t := range l.tracked {
		if now.Sub(t.first) < l.window {
			kept = append(kept, t)
			continue
		}
		if err := l.summarize(ctx, t, now); err != nil {
			errs = append(errs, err)
		}
	}
	clear(l.tracked[len(kept):])
	l.tracked = kept
	return errs
}

// flushAll writes the summary of every record with suppressed copies and
// keeps folding them until their windows end.
func (l *limiter) flushAll(ctx context.Context, now time.Time) []error {
	var errs []error
	for _, t := range l.tracked {
		if err := l.summarize(ctx, t, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func (l *limiter) summarize(ctx context.Context, t *repeat, now time.Time) error {
	if t.suppressed == 0 {
		return nil
	}
	n := t.suppressed
	t.suppressed = 0
	s := slog.NewRecord(now, t.record.Level, fmt.Sprintf("%s (repeated %d times)", t.record.Message, n), t.record.PC)
	t.record.Attrs(func(a slog.Attr) bool {
		if a.Key != "repeated" {
			s.AddAttrs(a)
		}
		return true
	})
	s.AddAttrs(slog.Int("repeated", n))
	if err := l.next.Handle(ctx, s); err != nil {
		return fmt.Errorf("write summary of %q: %w", t.record.Message, err)
	}
	return nil
}

// armTimer makes sure a sweep runs by due, so that the summary of a fault
// that has stopped repeating is written even if nothing else is logged
// after it. Called with l.mu held.
func (l *limiter) armTimer(now, due time.Time) {
	if l.timer != nil {
		if !due.Before(l.due) {
			return
		}
		l.timer.Stop()
	}
	l.due = due
	l.timer = time.AfterFunc(max(due.Sub(now), 0), l.sweep)
}

// sweep writes the summaries whose windows have ended by the limiter's
// clock and re-arms itself while anything is still being folded.
func (l *limiter) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	now := l.now()
	_ = l.expire(context.Background(), now) // nowhere to report a failed log write
	for _, t := range l.tracked {
		if t.suppressed > 0 {
			l.armTimer(now, t.first.Add(l.window))
			return
		}
	}
}

// recordKey identifies a record by level, message and attributes, quoted
// so that no two different records share a key.
func recordKey(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	b.WriteString(strconv.Quote(r.Message))
	r.Attrs(func(a slog.Attr) bool {
		writeAttrKey(&b, a)
		return true
	})
	return b.String()
}

func writeAttrKey(b *strings.Builder, a slog.Attr) {
	b.WriteByte(' ')
	b.WriteString(strconv.Quote(a.Key))
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		b.WriteString("{")
		for _, m := range v.Group() {
			writeAttrKey(b, m)
		}
		b.WriteString("}")
		return
	}
	b.WriteByte('=')
	b.WriteString(strconv.Quote(v.String()))
}
