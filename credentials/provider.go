package credentials

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
)

// expiryJitterFrac randomises the cache's expiry window so that devices
// do not all refresh at the same instant.
const expiryJitterFrac = 0.5

// Manager is the credentials Provider the daemon hands to the KVS
// clients: a Cache in front of a Refresher in front of the configured
// source. Start Run in its own goroutine so that refreshes happen in the
// background; call Invalidate when KVS answers 403 "security token
// expired".
//
// Refreshing never touches an upload in progress: a PutMedia request is
// signed once when it starts, and new credentials only apply to requests
// signed afterwards.
type Manager struct {
	cfg   Config
	cache *Cache
	ref   *Refresher
}

var _ Provider = (*Manager)(nil)

// New builds the provider for cfg.Source. It does not fetch anything; for
// the default chain it checks the environment and shared files.
func New(ctx context.Context, cfg Config, opts ...Option) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	base, err := newBase(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	ref := NewRefresher(base, cfg.Source, cfg.RetryBase, opts...)
	cache := NewCache(ref, cfg.ExpiryWindow, expiryJitterFrac)
	cache.clock = buildOptions(cfg, opts).clock
	return &Manager{cfg: cfg, cache: cache, ref: ref}, nil
}

// Retrieve implements Provider.
func (p *Manager) Retrieve(ctx context.Context) (Credentials, error) {
	return p.cache.Retrieve(ctx)
}

// Run refreshes credentials in the background until ctx ends (returns
// nil then).
func (p *Manager) Run(ctx context.Context) error { return p.ref.Run(ctx) }

// Invalidate forgets the current credentials so that the next Retrieve
// gets new ones. Credentials fetched less than two seconds ago are kept.
func (p *Manager) Invalidate() {
	p.ref.Invalidate()
	p.cache.Invalidate()
}

// Status reports the current credentials without secrets.
func (p *Manager) Status() Status { return p.ref.Status() }

// String describes the provider without secrets.
func (p *Manager) String() string { return "credentials provider: " + p.cfg.String() }

func newBase(_ context.Context, cfg Config, opts []Option) (Provider, error) {
	switch cfg.Source {
	case SourceIoT:
		return NewIoTProvider(cfg, opts...)
	case SourceStatic:
		return StaticProvider{Value: Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey.Reveal(),
			SessionToken: cfg.SessionToken.Reveal(), Source: SourceStatic}}, nil
	case SourceDefault:
		return newDefaultChain()
	}
	return nil, fmt.Errorf("credentials: source %q is unknown", cfg.Source)
}

// Check fetches credentials once, bypassing every cache, and returns the
// line `kvscamd check` prints: "credentials: ok ..." or
// "credentials: FAIL reason; fix: ...". The error is non-nil exactly when
// the line says FAIL. Neither contains secrets.
func Check(ctx context.Context, cfg Config, opts ...Option) (string, error) {
	fail := func(err error) (string, error) {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		return "credentials: FAIL " + strings.TrimPrefix(msg, "credentials: "), err
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	cfg = cfg.withDefaults()
	o := buildOptions(cfg, opts)
	base, err := newBase(ctx, cfg, opts)
	if err != nil {
		return fail(err)
	}
	creds, err := base.Retrieve(ctx)
	if err != nil {
		return fail(err)
	}
	var b strings.Builder
	b.WriteString("credentials: ok ")
	switch cfg.Source {
	case SourceIoT:
		fmt.Fprintf(&b, "iot role alias %s (thing %s, endpoint %s)", cfg.RoleAlias, cfg.ThingName, cfg.Endpoint)
	case SourceDefault:
		fmt.Fprintf(&b, "default chain (%s)", creds.Source)
	default:
		b.WriteString(cfg.Source)
	}
	fmt.Fprintf(&b, ", access key %s", RedactAccessKeyID(creds.AccessKeyID))
	now := o.clock.Now()
	if creds.CanExpire {
		fmt.Fprintf(&b, ", expires %s (in %s)", creds.Expires.UTC().Format(time.RFC3339), humanDuration(creds.Expires.Sub(now)))
	} else {
		b.WriteString(", does not expire")
	}
	if cfg.Source == SourceIoT {
		if chain, err := certs.LoadCertificates(cfg.Cert, "certificate"); err == nil {
			na := chain[0].NotAfter
			fmt.Fprintf(&b, "; device certificate valid until %s (in %s)", na.UTC().Format(time.RFC3339), humanDuration(na.Sub(now)))
		}
	}
	return b.String(), nil
}

// humanDuration prints 2h05m, 59m or 42s.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "the past"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 72*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
