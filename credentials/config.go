package credentials

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Sources of credentials, the values of Config.Source.
const (
	SourceIoT     = "iot"     // AWS IoT credentials provider, mutual TLS with the device certificate
	SourceStatic  = "static"  // fixed keys from the configuration
	SourceDefault = "default" // AWS_* environment variables, then static keys in the shared files
)

// Defaults for the IoT credentials provider's timeouts and retries. The
// endpoint answers in well under a second; longer waits only delay the
// operator's error message.
const (
	DefaultConnectTimeout = 5 * time.Second  // TCP connect, and separately the TLS handshake
	DefaultRequestTimeout = 15 * time.Second // one whole request, connect to last body byte
	DefaultMaxAttempts    = 4                // per Retrieve, on network errors, 429 and 5xx
	DefaultRetryBase      = 500 * time.Millisecond
	DefaultRetryMax       = 8 * time.Second
	// DefaultExpiryWindow is how long before expiry the Cache
	// stops handing out credentials; it is capped at a tenth of their
	// lifetime (see AdjustExpiresBy).
	DefaultExpiryWindow = 5 * time.Minute
)

// Config selects and configures the credentials source. The daemon fills
// it from the [credentials] table of its configuration file.
type Config struct {
	Source string // SourceIoT, SourceStatic or SourceDefault

	// IoT credentials provider.
	Endpoint  string // host name from `aws iot describe-endpoint --endpoint-type iot:CredentialProvider`, optionally host:port
	RoleAlias string
	ThingName string
	Cert      string // device certificate, PEM
	Key       string // its private key, PEM, mode 0600
	CA        string // CA bundle for the endpoint, PEM; empty = system store

	// Static credentials.
	AccessKeyID     string
	SecretAccessKey Secret
	SessionToken    Secret

	// Region is kept for configurations that set it; no source needs it
	// (the default chain reads static keys only and asks no service).
	Region string

	// Zero means the Default* constant.
	ConnectTimeout time.Duration
	RequestTimeout time.Duration
	MaxAttempts    int
	RetryBase      time.Duration
	RetryMax       time.Duration
	ExpiryWindow   time.Duration
}

// String describes the configuration without secrets.
func (c Config) String() string {
	switch c.Source {
	case SourceIoT:
		return fmt.Sprintf("iot endpoint %s role alias %s thing %s cert %s key %s ca %s",
			c.Endpoint, c.RoleAlias, c.ThingName, c.Cert, c.Key, c.CA)
	case SourceStatic:
		return fmt.Sprintf("static access key %s", RedactAccessKeyID(c.AccessKeyID))
	}
	return c.Source
}

// Format makes every fmt verb, %#v and %+v included, print String.
func (c Config) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue keeps secrets out of structured logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.ExpiryWindow <= 0 {
		c.ExpiryWindow = DefaultExpiryWindow
	}
	return c
}

// Validate checks that the settings the source needs are present. It does
// not touch files or the network.
func (c Config) Validate() error {
	var errs []error
	need := func(v, key string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("credentials: [credentials] %s is required for source %q", key, c.Source))
		}
	}
	switch c.Source {
	case SourceIoT:
		need(c.Endpoint, "endpoint")
		need(c.RoleAlias, "role_alias")
		need(c.ThingName, "thing_name")
		need(c.Cert, "cert")
		need(c.Key, "key")
		if c.Endpoint != "" {
			if err := checkEndpoint(c.Endpoint); err != nil {
				errs = append(errs, err)
			}
		}
		if strings.ContainsAny(c.RoleAlias, "/?#% ") {
			errs = append(errs, fmt.Errorf("credentials: [credentials] role_alias %q must be the alias name only (no slashes, spaces or query)", c.RoleAlias))
		}
	case SourceStatic:
		need(c.AccessKeyID, "access_key_id")
		need(c.SecretAccessKey.Reveal(), "secret_access_key")
	case SourceDefault:
	case "":
		errs = append(errs, errors.New(`credentials: [credentials] source is empty: set "iot", "static" or "default"`))
	default:
		errs = append(errs, fmt.Errorf(`credentials: [credentials] source %q is unknown: use "iot", "static" or "default"`, c.Source))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, errors.New("credentials: max attempts must not be negative"))
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts "host" and "host:port", nothing with a scheme or a
// path: the URL is always built as https://<endpoint>/role-aliases/...
func checkEndpoint(ep string) error {
	if strings.Contains(ep, "://") || strings.ContainsAny(ep, "/?# ") {
		return fmt.Errorf("credentials: [credentials] endpoint %q must be a host name (optionally host:port) without scheme or path, e.g. xxxx.credentials.iot.eu-west-1.amazonaws.com", ep)
	}
	if host, port, err := net.SplitHostPort(ep); err == nil {
		if host == "" {
			return fmt.Errorf("credentials: [credentials] endpoint %q has no host name", ep)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("credentials: [credentials] endpoint %q has an invalid port", ep)
		}
	}
	return nil
}

// endpointHost returns the host part of ep (for SNI and verification) and
// the address to dial, adding port 443 when none is given.
func endpointHost(ep string) (host, addr string) {
	if h, _, err := net.SplitHostPort(ep); err == nil {
		return h, ep
	}
	return strings.Trim(ep, "[]"), net.JoinHostPort(strings.Trim(ep, "[]"), "443")
}
