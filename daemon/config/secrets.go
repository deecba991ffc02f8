package config

import (
	"reflect"
	"regexp"
	"strings"

	"github.com/kvscamd/kvscamd/credentials"
)

// secretKeys maps the name of every key whose value is a
// credentials.Secret (e.g. "secret_access_key") to its dotted path (e.g.
// "credentials.secret_access_key"). It is found by reflection so that a
// new Secret field is kept out of error messages without a list to update.
var secretKeys = findSecretKeys(reflect.TypeOf(Config{}), "", map[string]string{})

var secretType = reflect.TypeOf(credentials.Secret(""))

func findSecretKeys(t reflect.Type, prefix string, out map[string]string) map[string]string {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := tagName(f)
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Array || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == secretType:
			out[tag] = prefix + tag
		case ft.Kind() == reflect.Struct:
			findSecretKeys(ft, prefix+tag+".", out)
		}
	}
	return out
}

// secretLike reports whether a key as written in the file holds a secret:
// a known secret key, a misspelling of one (which the parser does not know
// either, but whose value is just as secret) or any key named like a
// credential.
func secretLike(name string) bool {
	name = strings.ToLower(name)
	if _, ok := secretKeys[name]; ok {
		return true
	}
	for known := range secretKeys {
		if editDistance(name, known) <= 2 {
			return true
		}
	}
	for _, word := range []string{"secret", "token", "password"} {
		if strings.Contains(name, word) {
			return true
		}
	}
	return false
}

// secretSpan is where the file assigns a secret-like key: the lines from
// the key to the end of its value, and the value as written.
type secretSpan struct {
	key         string // the key's last piece, as written but unquoted
	first, last int    // 1-based lines
	value       string // raw text after "=", every line of it
}

var (
	// keyAssignRE finds "key =" at the start of a line or inside an inline
	// table; the key may be dotted and its pieces quoted.
	keyAssignRE = regexp.MustCompile(`(?:^|[{,])\s*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)\s*=`)
	keyPieceRE  = regexp.MustCompile(`[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'`)
)

// secretSpans finds every assignment of a secret-like key in data. It
// works on the raw text, because it is used exactly when the file is not
// valid TOML; a false match only makes an error message say less.
func secretSpans(data []byte) []secretSpan {
	lines := strings.Split(string(data), "\n")
	var spans []secretSpan
	for i, l := range lines {
		for _, m := range keyAssignRE.FindAllStringSubmatchIndex(l, -1) {
			pieces := keyPieceRE.FindAllString(l[m[2]:m[3]], -1)
			if len(pieces) == 0 {
				continue
			}
			key := strings.Trim(pieces[len(pieces)-1], `"'`)
			if !secretLike(key) {
				continue
			}
			rest := l[m[1]:]
			last := i + valueLines(rest, lines[i+1:])
			value := strings.Join(append([]string{rest}, lines[i+1:last+1]...), "\n")
			spans = append(spans, secretSpan{key: key, first: i + 1, last: last + 1, value: value})
		}
	}
	return spans
}

// valueLines returns how many lines after the first a value starting with
// rest takes: multi-line strings and arrays run on to their closing
// delimiter, or to the end of the file when it is missing.
func valueLines(rest string, following []string) int {
	v := strings.TrimSpace(rest)
	var closing string
	switch {
	case strings.HasPrefix(v, `"""`), strings.HasPrefix(v, `'''`):
		closing, v = v[:3], v[3:]
	case strings.HasPrefix(v, "["):
		closing = "]"
	default:
		return 0
	}
	if strings.Contains(v, closing) {
		return 0
	}
	for n, l := range following {
		if strings.Contains(l, closing) {
			return n + 1
		}
	}
	return len(following)
}

// leaks reports whether msg repeats a piece of the span's value long
// enough to matter. It backs up the line check in secretError in case the
// parser reports a position outside the span.
func (s secretSpan) leaks(msg string) bool {
	for _, w := range strings.FieldsFunc(s.value, func(r rune) bool {
		return r <= ' ' || strings.ContainsRune(`"'=[]{},#`, r)
	}) {
		if len(w) >= 4 && strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// secretError returns the error to report instead of msg when a decode
// error at line, whose last key the parser says is lastKey, concerns a
// secret value; ok is false when it does not. The replacement names the
// key and the line and says how to write the value, without any of it.
func secretError(spans []secretSpan, line int, lastKey, msg string) (err string, ok bool) {
	key, name := "", ""
	for _, s := range spans {
		if line >= s.first && line <= s.last || s.leaks(msg) {
			key, name = s.key, s.key
			if line < s.first || line > s.last {
				line = s.first
			}
			break
		}
	}
	if lastKey != "" {
		pieces := strings.Split(lastKey, ".")
		last := pieces[len(pieces)-1]
		switch {
		case key == "" && secretLike(last):
			key, name = lastKey, last
		case key != "" && strings.EqualFold(last, key):
			// The parser knows the table the key is in.
			key = lastKey
		case key != "" && secretKeys[strings.ToLower(key)] == lastKey+"."+strings.ToLower(key):
			// The parser stopped in the table, before the key.
			key = lastKey + "." + key
		}
	}
	if key == "" {
		return "", false
	}
	return lineMessage(line, key+": the value is not valid TOML and is not shown because it is a secret; quote the value: "+name+` = "..."`), true
}
