package credentials

import (
	"fmt"
	"log/slog"
)

// redacted is what a Secret prints as.
const redacted = "[redacted]"

// Secret holds a secret string (secret access key, session token). Every
// way of printing it (fmt verbs, slog, JSON, text marshalling) shows
// "[redacted]"; only Reveal returns the value, so a leak has to be written
// on purpose.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]", or "" when the secret is empty, so that an
// unset value can still be told apart.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format applies String to every verb, including %x, %q and %#v.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler, so JSON and TOML
// encoders print the redacted form too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// RedactAccessKeyID keeps the first and last four characters of an access
// key ID, enough to tell keys apart in logs and status output.
func RedactAccessKeyID(id string) string {
	const keep = 4
	switch {
	case id == "":
		return "(none)"
	case len(id) <= 2*keep:
		return "…"
	}
	return id[:keep] + "…" + id[len(id)-keep:]
}
