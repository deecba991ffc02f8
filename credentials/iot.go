package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/internal/untrusted"
)

// IoTSourceName is Credentials.Source for credentials from AWS IoT.
const IoTSourceName = "IoTCredentialsProvider"

// ThingNameHeader carries the thing name; the service checks that the
// thing is attached to the client certificate.
const ThingNameHeader = "x-amzn-iot-thingname"

// maxResponseBody bounds what is read of an answer; real ones are < 2 KiB.
const maxResponseBody = 64 << 10

// maxMessageLen bounds how much of the server's error message is quoted.
const maxMessageLen = 300

// IoTProvider fetches temporary AWS credentials from the AWS IoT
// credentials provider over mutual TLS. Each Retrieve is a network request
// (with retries); New wraps it in a Refresher and a Cache.
//
// The certificate, key and CA files are read again on every Retrieve, so a
// certificate replaced on disk is picked up without a restart, and a
// broken file is reported at the moment it matters.
type IoTProvider struct {
	cfg  Config
	host string // SNI and verified server name
	addr string // host:port to dial
	url  string
	o    options
}

// NewIoTProvider checks cfg and returns a provider; it does not touch the
// network. Files are checked by Retrieve (and by Check).
func NewIoTProvider(cfg Config, opts ...Option) (*IoTProvider, error) {
	cfg.Source = SourceIoT
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	host, addr := endpointHost(cfg.Endpoint)
	return &IoTProvider{
		cfg:  cfg,
		host: host,
		addr: addr,
		url:  "https://" + cfg.Endpoint + "/role-aliases/" + url.PathEscape(cfg.RoleAlias) + "/credentials",
		o:    buildOptions(cfg, opts),
	}, nil
}

// Retrieve implements Provider.
func (p *IoTProvider) Retrieve(ctx context.Context) (Credentials, error) {
	tlsCfg, err := certs.ClientTLSConfig(certs.Files{Cert: p.cfg.Cert, Key: p.cfg.Key, CA: p.cfg.CA}, p.host, p.o.clock.Now())
	if err != nil {
		return Credentials{}, p.newError(0, "", "the device's TLS files are not usable", "", false, err)
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            p.o.dial,
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    p.cfg.ConnectTimeout,
		ResponseHeaderTimeout:  p.cfg.RequestTimeout,
		DisableKeepAlives:      true, // one request an hour: nothing to reuse
		MaxResponseHeaderBytes: maxResponseBody,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		Timeout:   p.cfg.RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	retries := backoff.Backoff{Min: p.cfg.RetryBase, Max: p.cfg.RetryMax}
	for attempt := 1; ; attempt++ {
		creds, retryAfter, err := p.fetch(ctx, client)
		if err == nil {
			return creds, nil
		}
		if ctx.Err() != nil {
			// Whatever happened on the wire, the caller gave up first.
			return Credentials{}, p.newError(0, "", "request abandoned", "", false, ctx.Err())
		}
		var e *Error
		if !errors.As(err, &e) {
			e = p.newError(0, "", "request failed", "", false, err)
		}
		e.Attempts = attempt
		if !e.Retryable || attempt >= p.cfg.MaxAttempts {
			return Credentials{}, e
		}
		wait := retries.Next()
		if retryAfter > wait {
			wait = min(retryAfter, p.cfg.RetryMax)
		}
		p.o.log.Debug("credentials: retrying IoT credentials request", "endpoint", p.cfg.Endpoint,
			"attempt", attempt, "wait", wait, "err", e.Error())
		if clock.Sleep(ctx, p.o.clock, wait) != nil {
			return Credentials{}, e
		}
	}
}

// fetch makes one request. retryAfter is the server's Retry-After, if any.
func (p *IoTProvider) fetch(ctx context.Context, client *http.Client) (Credentials, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return Credentials{}, 0, p.newError(0, "", "cannot build the request URL", "check [credentials] endpoint and role_alias", false, err)
	}
	req.Header.Set(ThingNameHeader, p.cfg.ThingName)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kvscamd")
	resp, err := client.Do(req)
	if err != nil {
		return Credentials{}, 0, p.transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return Credentials{}, 0, p.transportError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Credentials{}, retryAfter(resp.Header.Get("Retry-After")), p.statusError(resp, body)
	}
	creds, err := p.parse(resp.Header.Get("Content-Type"), body)
	return creds, 0, err
}

// iotResponse is the 200 answer. It is never printed: it holds secrets.
type iotResponse struct {
	Credentials struct {
		AccessKeyID     string `json:"accessKeyId"`
		SecretAccessKey string `json:"secretAccessKey"`
		SessionToken    string `json:"sessionToken"`
		Expiration      string `json:"expiration"`
	} `json:"credentials"`
}

func (p *IoTProvider) parse(contentType string, body []byte) (Credentials, error) {
	var r iotResponse
	if len(body) > maxResponseBody {
		return Credentials{}, p.newError(http.StatusOK, "", fmt.Sprintf("the answer is larger than %d bytes", maxResponseBody),
			"check that [credentials] endpoint is the iot:CredentialProvider endpoint", false, nil)
	}
	// The JSON error is not wrapped: its text can quote the body, which
	// holds secrets.
	if err := json.Unmarshal(body, &r); err != nil {
		return Credentials{}, p.newError(http.StatusOK, "",
			fmt.Sprintf("the answer is not credentials JSON (%d bytes, content type %q)", len(body), contentType),
			"check that [credentials] endpoint is the iot:CredentialProvider endpoint", false, nil)
	}
	c := r.Credentials
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"accessKeyId", c.AccessKeyID}, {"secretAccessKey", c.SecretAccessKey},
		{"sessionToken", c.SessionToken}, {"expiration", c.Expiration},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return Credentials{}, p.newError(http.StatusOK, "",
			"the answer lacks credentials."+strings.Join(missing, ", credentials."),
			"check that [credentials] endpoint is the iot:CredentialProvider endpoint", false, nil)
	}
	exp, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil {
		return Credentials{}, p.newError(http.StatusOK, "",
			fmt.Sprintf("the expiration %q is not an RFC 3339 time", untrusted.Text(c.Expiration, 40)), "", false, nil)
	}
	if now := p.o.clock.Now(); !exp.After(now) {
		return Credentials{}, p.newError(http.StatusOK, "",
			fmt.Sprintf("the credentials expire at %s, which is not after the system clock's %s",
				exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			"the system clock is probably wrong: synchronise it (NTP)", false, nil)
	}
	return Credentials{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		Source:          IoTSourceName,
		CanExpire:       true,
		Expires:         exp,
	}, nil
}

// statusError turns a non-200 answer into advice for the operator.
func (p *IoTProvider) statusError(resp *http.Response, body []byte) error {
	msg := serverMessage(resp.Header.Get("Content-Type"), body)
	lower := strings.ToLower(msg)
	code := resp.StatusCode
	alias, thing, cert := p.cfg.RoleAlias, p.cfg.ThingName, p.cfg.Cert
	switch {
	case code == http.StatusBadRequest && (strings.Contains(lower, "duration") || strings.Contains(lower, "maxsession")):
		return p.newError(code, msg, fmt.Sprintf("role alias %s asks for longer credentials than its IAM role allows", alias),
			"lower the alias's credential duration (aws iot update-role-alias --credential-duration-seconds) or raise the role's MaxSessionDuration", false, nil)
	case code == http.StatusBadRequest && strings.Contains(lower, "assume"):
		return p.newError(code, msg, fmt.Sprintf("AWS IoT cannot assume the IAM role behind role alias %s", alias),
			"check that the role exists and that its trust policy lets credentials.iot.amazonaws.com call sts:AssumeRole", false, nil)
	case code == http.StatusBadRequest:
		return p.newError(code, msg, "the credentials provider rejected the request as malformed",
			"check [credentials] role_alias and thing_name", false, nil)
	case code == http.StatusForbidden && strings.Contains(lower, "thing"):
		return p.newError(code, msg, fmt.Sprintf("thing %q is not attached to the device certificate %s", thing, cert),
			"set thing_name to the thing this certificate belongs to, or attach it (aws iot attach-thing-principal)", false, nil)
	case code == http.StatusForbidden && strings.Contains(lower, "certificate"):
		return p.newError(code, msg, fmt.Sprintf("the device certificate %s is not valid for this endpoint", cert),
			"check that the certificate is registered and ACTIVE in AWS IoT (not revoked or inactive) in the endpoint's account and region", false, nil)
	case code == http.StatusForbidden:
		return p.newError(code, msg, fmt.Sprintf("access to role alias %s was denied", alias),
			"the IoT policy attached to the certificate must allow iot:AssumeRoleWithCertificate on the role alias's ARN; also check the certificate is ACTIVE and attached to the thing", false, nil)
	case code == http.StatusNotFound:
		return p.newError(code, msg, fmt.Sprintf("role alias %s does not exist at this endpoint", alias),
			"create it (aws iot create-role-alias) or fix [credentials] role_alias; check that the endpoint is in the alias's region", false, nil)
	case code == http.StatusTooManyRequests:
		return p.newError(code, msg, "the credentials provider is throttling requests", "retried with back-off; if it persists, fewer devices should share the account's rate", true, nil)
	case code >= 500:
		return p.newError(code, msg, "the credentials provider failed on its side", "retried with back-off; nothing to change on the device", true, nil)
	}
	return p.newError(code, msg, "unexpected answer from the credentials provider", "check that [credentials] endpoint is the iot:CredentialProvider endpoint", false, nil)
}

// serverMessage extracts {"message":...}, or else a short text body.
func serverMessage(contentType string, body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		return untrusted.Text(m.Message, maxMessageLen)
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	if strings.HasPrefix(mt, "text/") {
		return untrusted.Text(string(body), maxMessageLen)
	}
	return ""
}

func (p *IoTProvider) newError(status int, msg, problem, fix string, retryable bool, cause error) *Error {
	return &Error{
		Endpoint:  p.cfg.Endpoint,
		RoleAlias: p.cfg.RoleAlias,
		Status:    status,
		Message:   msg,
		Problem:   problem,
		Fix:       fix,
		Retryable: retryable,
		Err:       cause,
	}
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// logAttrs describes credentials for a log record without secrets.
func logAttrs(c Credentials) []any {
	attrs := []any{"source", c.Source, "access_key", RedactAccessKeyID(c.AccessKeyID)}
	if c.CanExpire {
		attrs = append(attrs, "expires", c.Expires.UTC().Format(time.RFC3339))
	}
	return attrs
}

var _ slog.LogValuer = Secret("")
