// Package untrusted makes text a server sent fit for logs and error
// messages: a reply body or error message may hold control characters
// (which would forge log lines) and may be arbitrarily long.
package untrusted

import (
	"strings"
	"unicode/utf8"
)

// Text returns s with control characters replaced by spaces, trimmed, and
// cut to at most max bytes (on a character boundary) with "…" marking a
// cut.
func Text(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
