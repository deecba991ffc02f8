package credentials

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	sdkcreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/kvscamd/kvscamd/credentials/certs"
)

// expiryJitterFrac randomises the cache's expiry window so that devices
// do not all refresh at the same instant.
const expiryJitterFrac = 0.5

// Provider is the credentials provider the daemon hands to the KVS
// clients: an aws.CredentialsCache in front of a Refresher in front of
// the configured source. Start Run in its own goroutine so that
// refreshes happen in the background; call Invalidate when KVS answers
// 403 "security token expired".
//
// Refreshing never touches an upload in progress: a PutMedia request is
// signed once when it starts, and new credentials only apply to requests
// signed afterwards.
type Provider struct {
	cfg   Config
	cache *aws.CredentialsCache
	ref   *Refresher
}

var _ aws.CredentialsProvider = (*Provider)(nil)

// New builds the provider for cfg.Source. It does not fetch anything; for
// the default chain it reads the environment and shared files.
func New(ctx context.Context, cfg Config, opts ...Option) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	base, err := newBase(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	ref := NewRefresher(base, cfg.Source, cfg.RetryBase, opts...)
	cache := aws.NewCredentialsCache(ref, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = cfg.ExpiryWindow
		o.ExpiryWindowJitterFrac = expiryJitterFrac
	})
	return &Provider{cfg: cfg, cache: cache, ref: ref}, nil
}

// Retrieve implements aws.CredentialsProvider.
func (p *Provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.cache.Retrieve(ctx)
	if err != nil {
		return c, unwrapCacheError(err)
	}
	return c, nil
}

// unwrapCacheError drops the cache's "failed to refresh cached
// credentials" prefix from our own errors: the operator needs the cause
// and the fix first. (A function of its own so that the hot path does not
// allocate.)
func unwrapCacheError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return err
}

// Run refreshes credentials in the background until ctx ends (returns
// nil then).
func (p *Provider) Run(ctx context.Context) error { return p.ref.Run(ctx) }

// Invalidate forgets the current credentials so that the next Retrieve
// gets new ones. Credentials fetched less than two seconds ago are kept.
func (p *Provider) Invalidate() {
	p.ref.Invalidate()
	p.cache.Invalidate()
}

// Status reports the current credentials without secrets.
func (p *Provider) Status() Status { return p.ref.Status() }

// String describes the provider without secrets.
func (p *Provider) String() string { return "credentials provider: " + p.cfg.String() }

func newBase(ctx context.Context, cfg Config, opts []Option) (aws.CredentialsProvider, error) {
	switch cfg.Source {
	case SourceIoT:
		return NewIoTProvider(cfg, opts...)
	case SourceStatic:
		return sdkcreds.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey.Reveal(), cfg.SessionToken.Reveal()), nil
	case SourceDefault:
		return newDefaultChain(ctx, cfg)
	}
	return nil, fmt.Errorf("credentials: source %q is unknown", cfg.Source)
}

// defaultChainHelp says where the SDK looks, for error messages.
const defaultChainHelp = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the service's environment, " +
	"or a profile in ~/.aws/credentials of the service user (HOME must be set; AWS_PROFILE selects the profile)"

// defaultChain is the SDK's chain: environment, shared credentials and
// config files (with their SSO, assume-role and process entries). The EC2
// instance metadata service is switched off: a camera is not an EC2
// instance, and probing it costs seconds on every failure.
type defaultChain struct{ inner aws.CredentialsProvider }

func newDefaultChain(ctx context.Context, cfg Config) (aws.CredentialsProvider, error) {
	loadOpts := []func(*config.LoadOptions) error{config.WithEC2IMDSClientEnableState(imds.ClientDisabled)}
	if cfg.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(cfg.Region))
	}
	ac, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("credentials: default chain: %w; %s", err, defaultChainHelp)
	}
	if ac.Credentials == nil {
		return nil, fmt.Errorf("credentials: default chain found no credential source; %s", defaultChainHelp)
	}
	return defaultChain{ac.Credentials}, nil
}

func (d defaultChain) Retrieve(ctx context.Context) (aws.Credentials, error) {
	// The SDK caches too; the Refresher only asks when it wants new
	// credentials, so the SDK's copy is dropped first. Otherwise a refresh
	// would get the same credentials back until the SDK thinks they expired.
	if inv, ok := d.inner.(interface{ Invalidate() }); ok {
		inv.Invalidate()
	}
	c, err := d.inner.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("credentials: default chain gave no credentials: %w; %s", err, defaultChainHelp)
	}
	return c, nil
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
