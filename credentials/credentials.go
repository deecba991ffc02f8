package credentials

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Credentials are one set of AWS keys and what is known about their
// lifetime. Printing them (fmt verbs, slog, JSON) shows the redacted access
// key ID and never the secret or the session token.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // empty for long-lived keys
	Source          string // where they came from, for logs and check output

	CanExpire bool
	Expires   time.Time // meaningful only when CanExpire
}

// HasKeys reports whether both halves of the key pair are present.
func (c Credentials) HasKeys() bool { return c.AccessKeyID != "" && c.SecretAccessKey != "" }

// Expired reports whether the credentials are no longer valid at now.
func (c Credentials) Expired(now time.Time) bool {
	return c.CanExpire && !c.Expires.After(now)
}

// String describes the credentials without secrets.
func (c Credentials) String() string {
	s := fmt.Sprintf("credentials %s from %s", RedactAccessKeyID(c.AccessKeyID), c.Source)
	if c.CanExpire {
		s += " expiring " + c.Expires.UTC().Format(time.RFC3339)
	}
	return s
}

// Format makes every fmt verb, %#v and %+v included, print String.
func (c Credentials) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue keeps secrets out of structured logs.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalText makes JSON and TOML encoders print String too.
func (c Credentials) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Provider hands out credentials. Implementations must be safe for
// concurrent use.
type Provider interface {
	Retrieve(ctx context.Context) (Credentials, error)
}

// ProviderFunc adapts a function to a Provider.
type ProviderFunc func(ctx context.Context) (Credentials, error)

// Retrieve calls f.
func (f ProviderFunc) Retrieve(ctx context.Context) (Credentials, error) { return f(ctx) }

// StaticProvider always hands out Value (source "static": fixed keys from
// the configuration, and tests).
type StaticProvider struct{ Value Credentials }

// Retrieve returns p.Value, or an error when it lacks keys.
func (p StaticProvider) Retrieve(context.Context) (Credentials, error) {
	if !p.Value.HasKeys() {
		return Credentials{}, fmt.Errorf("credentials: static credentials lack the access key ID or the secret access key")
	}
	return p.Value, nil
}

var (
	_ Provider       = StaticProvider{}
	_ slog.LogValuer = Credentials{}
)
