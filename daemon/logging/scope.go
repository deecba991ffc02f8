package logging

import (
	"context"
	"log/slog"
	"slices"
)

// scope keeps the attributes and groups given to Logger.With and
// WithGroup itself instead of handing them down, and passes each record on
// with them folded in as plain and group attributes. The handlers below it
// therefore see every record whole: the limiter can tell two loggers'
// records apart and replay a summary without the logger that made it, the
// journal handler can map every attribute to a field, and duplicate keys
// (a logger made With("stream", x) that logs "stream" again) can be
// dropped before any of them formats a thing.
type scope struct {
	next   slog.Handler
	frames []frame // frames[0] is the top level; each later one a group
}

// frame is one group level: its name and the attributes given to it.
type frame struct {
	group string
	attrs []slog.Attr
}

func newScope(next slog.Handler) *scope {
	return &scope{next: next, frames: []frame{{}}}
}

func (s *scope) Enabled(ctx context.Context, l slog.Level) bool {
	return s.next.Enabled(ctx, l)
}

func (s *scope) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return s
	}
	// Copy on write: loggers derived from s must not see each other's
	// attributes.
	frames := slices.Clone(s.frames)
	last := &frames[len(frames)-1]
	last.attrs = append(slices.Clip(last.attrs), attrs...)
	return &scope{next: s.next, frames: frames}
}

func (s *scope) WithGroup(name string) slog.Handler {
	if name == "" {
		return s
	}
	frames := append(slices.Clip(s.frames), frame{group: name})
	return &scope{next: s.next, frames: frames}
}

func (s *scope) Handle(ctx context.Context, r slog.Record) error {
	// The record's own attributes belong to the innermost group.
	inner := slices.Clone(s.frames[len(s.frames)-1].attrs)
	r.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	attrs := normalize(inner)
	for i := len(s.frames) - 1; i > 0; i-- {
		outer := slices.Clone(s.frames[i-1].attrs)
		if len(attrs) > 0 {
			outer = append(outer, slog.Attr{Key: s.frames[i].group, Value: slog.GroupValue(attrs...)})
		}
		attrs = normalize(outer)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(attrs...)
	return s.next.Handle(ctx, out)
}

// normalize resolves values, inlines groups without a key, drops empty
// attributes and groups, and keeps one attribute per key: the last one
// given, which is the most specific, in the place of the first.
func normalize(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, 0, len(attrs))
	index := make(map[string]int, len(attrs))
	var add func(a slog.Attr)
	add = func(a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Value.Kind() == slog.KindGroup {
			members := a.Value.Group()
			if a.Key == "" {
				for _, m := range members {
					add(m)
				}
				return
			}
			members = normalize(members)
			if len(members) == 0 {
				return
			}
			a.Value = slog.GroupValue(members...)
		} else if a.Key == "" {
			return
		}
		if i, ok := index[a.Key]; ok {
			out[i] = a
			return
		}
		index[a.Key] = len(out)
		out = append(out, a)
	}
	for _, a := range attrs {
		add(a)
	}
	return out
}
