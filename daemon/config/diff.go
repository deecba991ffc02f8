package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/kvscamd/kvscamd/credentials"
)

// Effect says what a running daemon has to do to apply a changed key.
type Effect int

// Effects of a changed key. The zero Effect is not one of them, so that a
// Change nobody classified cannot pass for a live one.
const (
	// EffectLive is applied to the running stream or daemon as it is.
	EffectLive Effect = iota + 1
	// EffectRestartSource rebuilds the stream's frame source; the
	// fragmenter and ring keep running.
	EffectRestartSource
	// EffectRestartFragmenter starts the stream's fragmenter again, which
	// closes the open fragment.
	EffectRestartFragmenter
	// EffectReopenRing closes the stream's ring and opens it with the new
	// settings.
	EffectReopenRing
	// EffectRestartDaemon needs the whole daemon restarted.
	EffectRestartDaemon
)

func (e Effect) String() string {
	switch e {
	case EffectLive:
		return "live"
	case EffectRestartSource:
		return "restart source"
	case EffectRestartFragmenter:
		return "restart fragmenter"
	case EffectReopenRing:
		return "reopen ring"
	case EffectRestartDaemon:
		return "restart daemon"
	}
	return "Effect(" + strconv.Itoa(int(e)) + ")"
}

// Change is one key whose value differs between two configurations.
type Change struct {
	// Key is the key as written in the file: "fps" within a stream,
	// "log_level" or "kvs.retention" at the top.
	Key string
	// Old and New are the values as they would be written, e.g. "2s" or
	// `["rpicam-vid", "-o", "-"]`. A secret is "[redacted]", or "" when
	// it is not set, never its value.
	Old, New string
	Effect   Effect
}

func (c Change) String() string {
	return fmt.Sprintf("%s: %q -> %q (%s)", c.Key, c.Old, c.New, c.Effect)
}

// streamEffects classifies every key of a [[stream]] table except name.
// TestStreamEffectsComplete fails when a new Stream field is not listed.
var streamEffects = map[string]Effect{
	"upload_rate_limit": EffectLive,
	"mode":              EffectLive,
	"upload_order":      EffectRestartDaemon,
	"max_live_lag":      EffectRestartDaemon,
	"driver":            EffectRestartSource,
	"device":            EffectRestartSource,
	"path":              EffectRestartSource,
	"loop":              EffectRestartSource,
	"realtime":          EffectRestartSource,
	"command":           EffectRestartSource,
	"pts_file":          EffectRestartSource,
	"width":             EffectRestartSource,
	"height":            EffectRestartSource,
	"fps":               EffectRestartSource,
	"bitrate":           EffectRestartSource,
	"keyframe_interval": EffectRestartFragmenter,
	"ring_size":         EffectReopenRing,
}

// daemonEffects lists the top-level keys a running daemon applies without
// a restart; every other key restarts it.
var daemonEffects = map[string]Effect{
	"log_level": EffectLive,
}

// DiffStream returns the keys whose values differ between two versions of
// one stream, in the order of the Stream fields. Name is not compared: it
// is the stream's identity, and a renamed stream is a removed one and an
// added one (see DiffStreams).
func DiffStream(old, new Stream) []Change {
	return diffStruct(reflect.ValueOf(old), reflect.ValueOf(new), "", func(key string) Effect {
		if e, ok := streamEffects[key]; ok {
			return e
		}
		// A key nobody classified yet: only a restart surely applies it.
		return EffectRestartDaemon
	}, map[string]bool{"name": true})
}

// DiffDaemon returns the top-level keys and the keys of the
// [credentials], [kvs] and [mqtt] tables whose values differ. Streams are
// compared by DiffStreams.
func DiffDaemon(old, new *Config) []Change {
	return diffStruct(reflect.ValueOf(*old), reflect.ValueOf(*new), "", func(key string) Effect {
		if e, ok := daemonEffects[key]; ok {
			return e
		}
		return EffectRestartDaemon
	}, map[string]bool{"stream": true})
}

// DiffStreams pairs the streams of two configurations by name. added are
// the names only in new, in its order; removed those only in old, in its
// order; changed holds DiffStream for every name in both whose settings
// differ, and is nil when none do. Names are unique in configurations that
// passed Validate; of duplicates, the first is compared.
func DiffStreams(old, new *Config) (added, removed []string, changed map[string][]Change) {
	oldByName := streamsByName(old)
	newByName := streamsByName(new)
	seen := map[string]bool{}
	for _, s := range new.Streams {
		if _, ok := oldByName[s.Name]; !ok && !seen[s.Name] {
			added = append(added, s.Name)
		}
		seen[s.Name] = true
	}
	clear(seen)
	for _, s := range old.Streams {
		if seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		n, ok := newByName[s.Name]
		if !ok {
			removed = append(removed, s.Name)
			continue
		}
		if cs := DiffStream(*oldByName[s.Name], *n); len(cs) > 0 {
			if changed == nil {
				changed = map[string][]Change{}
			}
			changed[s.Name] = cs
		}
	}
	return added, removed, changed
}

func streamsByName(c *Config) map[string]*Stream {
	m := make(map[string]*Stream, len(c.Streams))
	for i := range c.Streams {
		if _, dup := m[c.Streams[i].Name]; !dup {
			m[c.Streams[i].Name] = &c.Streams[i]
		}
	}
	return m
}

// diffStruct compares two values of one struct type field by field,
// descending into nested tables; skip names keys of this level to leave
// out.
func diffStruct(a, b reflect.Value, prefix string, effect func(key string) Effect, skip map[string]bool) []Change {
	var out []Change
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := tagName(t.Field(i))
		if tag == "" || tag == "-" || skip[tag] {
			continue
		}
		key := prefix + tag
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct {
			out = append(out, diffStruct(fa, fb, key+".", effect, nil)...)
			continue
		}
		if equalValues(fa, fb) {
			continue
		}
		out = append(out, Change{Key: key, Old: formatValue(fa), New: formatValue(fb), Effect: effect(key)})
	}
	return out
}

// equalValues treats a missing list and an empty one as the same, as the
// file cannot tell them apart.
func equalValues(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// formatValue writes a value the way the file would, except secrets,
// which print their redacted form.
func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case credentials.Secret:
		return x.String()
	case fmt.Stringer:
		return x.String()
	case string:
		return x
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}
