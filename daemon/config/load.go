package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads the file at path, applies defaults and validates the result.
// The error names the file, and for syntax errors and unknown keys the line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// document is what the file is decoded into. Streams shadows
// Config.Streams so that each [[stream]] table can be decoded on top of
// DefaultStream instead of a zero Stream (a plain decode would allocate
// zero elements and lose realtime = true and the other defaults).
type document struct {
	Config
	Streams []toml.Primitive `toml:"stream"`
}

// Parse decodes a configuration file's contents and applies defaults,
// without validating values. Syntax errors, type mismatches and unknown
// keys are errors.
func Parse(data []byte) (*Config, error) {
	doc := document{Config: Default()}
	doc.Config.Streams = nil
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		return nil, describeDecodeError(err, data)
	}
	c := doc.Config
	for i, p := range doc.Streams {
		s := DefaultStream()
		if err := md.PrimitiveDecode(p, &s); err != nil {
			return nil, fmt.Errorf("stream[%d]: %w", i, describeDecodeError(err, data))
		}
		c.Streams = append(c.Streams, s)
	}
	if len(c.Streams) == 0 {
		c.Streams = []Stream{DefaultStream()}
	}
	if err := unknownKeys(data, md.Undecoded()); err != nil {
		return nil, err
	}
	c.fillDerived()
	return &c, nil
}

// describeDecodeError turns the TOML library's errors about data into one
// line that starts with the line number, without the library's multi-line
// excerpt. The library quotes the text it could not parse, so errors about
// a secret's value are replaced by one that names only the key and line.
func describeDecodeError(err error, data []byte) error {
	var msg, lastKey string
	var line int
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg, line, lastKey = pe.Message, pe.Position.Line, pe.LastKey
		if lastKey != "" && !strings.Contains(msg, lastKey) {
			msg = lastKey + ": " + msg
		}
		msg = lineMessage(line, msg)
	} else {
		// Type mismatches come as plain errors that already name the line.
		msg = strings.TrimPrefix(err.Error(), "toml: ")
		if m := plainErrorRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			lastKey = m[2]
		}
	}
	if s, ok := secretError(secretSpans(data), line, lastKey, msg); ok {
		return errors.New(s)
	}
	return errors.New(msg)
}

// plainErrorRE reads the line and key out of the library's type errors,
// e.g. `line 9 (last key "credentials.cert"): incompatible types: ...`.
var plainErrorRE = regexp.MustCompile(`^line (\d+)(?: \(last key "([^"]*)"\))?`)

// lineMessage prefixes msg with its line, when it is known.
func lineMessage(line int, msg string) string {
	if line <= 0 {
		return msg
	}
	return fmt.Sprintf("line %d: %s", line, msg)
}

// UnknownKeyError reports keys in the file that kvscamd does not know.
type UnknownKeyError struct {
	Keys []UnknownKey
}

// UnknownKey is one unknown key with where it was found.
type UnknownKey struct {
	Key        string // e.g. "stream[1].fsp"
	Line       int    // 1-based; 0 if it could not be found
	Suggestion string // a known key with a similar name, or ""
}

func (k UnknownKey) String() string {
	var b strings.Builder
	if k.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", k.Line)
	}
	fmt.Fprintf(&b, "unknown key %s", k.Key)
	if k.Suggestion != "" {
		fmt.Fprintf(&b, " (did you mean %s?)", k.Suggestion)
	} else {
		b.WriteString(" (remove it; see the example configuration for the keys that exist)")
	}
	return b.String()
}

func (e *UnknownKeyError) Error() string {
	parts := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		parts[i] = k.String()
	}
	return strings.Join(parts, "; ")
}

// unknownKeys builds an UnknownKeyError for the undecoded keys, reporting
// a whole unknown table once rather than each key inside it.
func unknownKeys(data []byte, undecoded []toml.Key) error {
	if len(undecoded) == 0 {
		return nil
	}
	sort.Slice(undecoded, func(i, j int) bool { return len(undecoded[i]) < len(undecoded[j]) })
	// The file is decoded again, generically, to find where keys are; this
	// only happens for files that are already known to be wrong.
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return describeDecodeError(err, data)
	}
	var reported []toml.Key
	var out []UnknownKey
next:
	for _, k := range undecoded {
		for _, r := range reported {
			if len(r) < len(k) && slices.Equal(r, k[:len(r)]) {
				continue next
			}
		}
		reported = append(reported, k)
		name, line := locate(&md, top, k)
		out = append(out, UnknownKey{Key: name, Line: line, Suggestion: suggest(k)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return &UnknownKeyError{Keys: out}
}

// failingValue makes the TOML library report its position: it always
// fails to decode, and the library wraps that failure in a ParseError
// carrying the position of the key being decoded. The library has no
// other public way to ask where a key is.
type failingValue struct{}

func (failingValue) UnmarshalTOML(any) error { return errors.New("locate") }

// locate finds the line of key k in the generically decoded file top and
// spells k with the index of the array element (e.g. [[stream]]) it is in.
func locate(md *toml.MetaData, top map[string]toml.Primitive, k toml.Key) (name string, line int) {
	if len(k) == 0 {
		return k.String(), 0
	}
	p, ok := top[k[0]]
	name = quoteKey(k[0])
	for i := 1; i < len(k) && ok; i++ {
		var arr []map[string]toml.Primitive
		if md.PrimitiveDecode(p, &arr) == nil {
			ok = false
			for j, m := range arr {
				if q, has := m[k[i]]; has {
					p, ok = q, true
					name += fmt.Sprintf("[%d]", j)
					break
				}
			}
		} else {
			var m map[string]toml.Primitive
			if md.PrimitiveDecode(p, &m) != nil {
				break
			}
			p, ok = m[k[i]]
		}
		name += "." + quoteKey(k[i])
	}
	if !ok {
		return k.String(), 0
	}
	var pe toml.ParseError
	if errors.As(md.PrimitiveDecode(p, failingValue{}), &pe) {
		line = pe.Position.Line
	}
	return name, line
}

// quoteKey quotes a key piece the way TOML needs it to be written.
func quoteKey(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0 {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// suggest returns the known key closest to the last piece of k among the
// keys allowed in the same table, if it is close enough to be a typo.
func suggest(k toml.Key) string {
	t := reflect.TypeOf(Config{})
	for _, piece := range k[:len(k)-1] {
		f, ok := fieldByTag(t, piece)
		if !ok {
			return ""
		}
		t = f.Type
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
	}
	last := strings.ToLower(k[len(k)-1])
	// Beyond this many edits a suggestion is more likely wrong than helpful.
	maxDist := 2
	if len(last) <= 4 {
		maxDist = 1
	}
	best, bestDist := "", maxDist+1
	for i := 0; i < t.NumField(); i++ {
		tag := tagName(t.Field(i))
		if tag == "-" || tag == "" {
			continue // not a key of the file
		}
		if d := editDistance(last, tag); d < bestDist {
			best, bestDist = tag, d
		}
	}
	return best
}

func tagName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return tag
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if tagName(t.Field(i)) == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours count one
// each, so the common typo "fsp" for "fps" is one edit away.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
