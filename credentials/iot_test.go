package credentials_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/credentials/iotlocal"
)

func TestIoTSuccess(t *testing.T) {
	e := newEnv(t, time.Hour)
	p, err := credentials.NewIoTProvider(e.cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Retrieve(context.Background())
	watchErr(err)
	if err != nil {
		t.Fatal(err)
	}
	issued := e.srv.Issued()
	if len(issued) != 1 {
		t.Fatalf("server issued %d credentials, want 1", len(issued))
	}
	want := issued[0]
	if c.AccessKeyID != want.AccessKeyID || c.SecretAccessKey != want.SecretAccessKey || c.SessionToken != want.SessionToken {
		t.Fatal("retrieved credentials differ from the issued ones")
	}
	if !c.CanExpire || !c.Expires.Equal(want.Expiration) || c.Source != credentials.IoTSourceName {
		t.Fatalf("CanExpire %v Expires %v (want %v) Source %q", c.CanExpire, c.Expires, want.Expiration, c.Source)
	}

	line, err := credentials.Check(context.Background(), e.cfg, credentials.WithLogger(testLogger(t)))
	watch("%s", line)
	watchErr(err)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	last := e.srv.Issued()[1]
	for _, w := range []string{"credentials: ok iot role alias kvscamd", "thing cam-0001",
		credentials.RedactAccessKeyID(last.AccessKeyID), "expires " + last.Expiration.UTC().Format(time.RFC3339), "(in ",
		"device certificate valid until"} {
		if !strings.Contains(line, w) {
			t.Errorf("check line %q lacks %q", line, w)
		}
	}
	if strings.Contains(line, last.AccessKeyID) {
		t.Errorf("check line shows the whole access key ID: %q", line)
	}
}

// TestIoTErrors provokes every failure the operator can cause and checks
// that the message names the cause and the fix, and that only transient
// failures are retried.
func TestIoTErrors(t *testing.T) {
	cases := []struct {
		name      string
		setup     func(e *env, cfg *credentials.Config)
		want      []string
		requests  int64 // requests the server must have seen
		retryable bool
		status    int
	}{
		{
			name:  "client cert from another CA",
			setup: func(e *env, c *credentials.Config) { c.Cert, c.Key = e.pki.OtherClient.Cert, e.pki.OtherClient.Key },
			want:  []string{"server rejected the client certificate", "other.pem.crt", "registered and ACTIVE", "attached to thing cam-0001"},
		},
		{
			name:  "server not trusted by CA file",
			setup: func(e *env, c *credentials.Config) { c.CA = e.pki.OtherCAFile },
			want:  []string{"not trusted by the CA file", "other-ca.pem", "kvscamd test CA", "[credentials] ca"},
		},
		{
			name: "wrong thing name",
			setup: func(e *env, c *credentials.Config) {
				c.ThingName = "cam-9999"
			},
			want:     []string{"HTTP 403", iotlocal.MsgInvalidThing, `thing "cam-9999" is not attached`, "attach-thing-principal"},
			requests: 1, status: 403,
		},
		{
			name:     "unknown role alias",
			setup:    func(e *env, c *credentials.Config) { c.RoleAlias = "nosuchalias" },
			want:     []string{"HTTP 404", iotlocal.MsgNoAlias, "role alias nosuchalias does not exist", "create-role-alias"},
			requests: 1, status: 404,
		},
		{
			name:     "role cannot be assumed",
			setup:    func(e *env, c *credentials.Config) { e.srv.Fail(400, iotlocal.MsgCannotAssume, -1) },
			want:     []string{"HTTP 400", iotlocal.MsgCannotAssume, "cannot assume the IAM role", "trust policy"},
			requests: 1, status: 400,
		},
		{
			name:     "duration too long",
			setup:    func(e *env, c *credentials.Config) { e.srv.Fail(400, iotlocal.MsgDurationTooBig, -1) },
			want:     []string{"HTTP 400", "MaxSessionDuration", "update-role-alias"},
			requests: 1, status: 400,
		},
		{
			name:     "access denied",
			setup:    func(e *env, c *credentials.Config) { e.srv.Fail(403, iotlocal.MsgAccessDenied, -1) },
			want:     []string{"HTTP 403", "Access Denied", "iot:AssumeRoleWithCertificate"},
			requests: 1, status: 403,
		},
		{
			name:     "certificate invalid on endpoint",
			setup:    func(e *env, c *credentials.Config) { e.srv.Fail(403, iotlocal.MsgCertInvalid, -1) },
			want:     []string{"HTTP 403", "device.pem.crt is not valid for this endpoint", "ACTIVE"},
			requests: 1, status: 403,
		},
		{
			name:     "server errors are retried",
			setup:    func(e *env, c *credentials.Config) { e.srv.Fail(500, "internal", -1) },
			want:     []string{"HTTP 500", "after 3 attempts", "failed on its side"},
			requests: 3, retryable: true, status: 500,
		},
		{
			name:     "throttling is retried",
			setup:    func(e *env, c *credentials.Config) { e.srv.Fail(429, "Rate exceeded", -1) },
			want:     []string{"HTTP 429", "Rate exceeded", "after 3 attempts", "throttling"},
			requests: 3, retryable: true, status: 429,
		},
		{
			name:  "expired client certificate",
			setup: func(e *env, c *credentials.Config) { c.Cert, c.Key = e.pki.ExpiredClient.Cert, e.pki.ExpiredClient.Key },
			want:  []string{"expired.pem.crt expired on", "valid from", "TLS files are not usable"},
		},
		{
			name:  "key does not match certificate",
			setup: func(e *env, c *credentials.Config) { c.Key = e.pki.OtherClient.Key },
			want:  []string{"other.pem.key does not belong to certificate", "device.pem.crt"},
		},
		{
			name: "group-readable key",
			setup: func(e *env, c *credentials.Config) {
				if err := os.Chmod(c.Key, 0o640); err != nil {
					panic(err)
				}
			},
			want: []string{"mode 0640", "chmod 600 " + "/"},
		},
		{
			name:  "missing CA file",
			setup: func(e *env, c *credentials.Config) { c.CA += ".missing" },
			want:  []string{"ca.pem.missing does not exist"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, time.Hour)
			cfg := e.cfg
			tc.setup(e, &cfg)
			p, err := credentials.NewIoTProvider(cfg, credentials.WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Retrieve(context.Background())
			watchErr(err)
			if err == nil {
				t.Fatal("Retrieve succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			var ce *credentials.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *credentials.Error", err)
			}
			if ce.Retryable != tc.retryable || ce.Status != tc.status {
				t.Errorf("Retryable %v Status %d, want %v %d", ce.Retryable, ce.Status, tc.retryable, tc.status)
			}
			if got := e.srv.Requests(); got != tc.requests {
				t.Errorf("server saw %d requests, want %d", got, tc.requests)
			}
			line, cerr := credentials.Check(context.Background(), cfg)
			watch("%s", line)
			if cerr == nil || !strings.HasPrefix(line, "credentials: FAIL ") || strings.Contains(line, "\n") {
				t.Errorf("Check line %q err %v, want one FAIL line", line, cerr)
			}
		})
	}
}

// TestIoTThrottledThenOK: transient failures followed by success give
// credentials.
func TestIoTThrottledThenOK(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.srv.Fail(http.StatusTooManyRequests, "Rate exceeded", 2)
	p, err := credentials.NewIoTProvider(e.cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Retrieve(context.Background()); err != nil {
		watchErr(err)
		t.Fatal(err)
	}
	if e.srv.Requests() != 3 || e.srv.Served() != 1 {
		t.Fatalf("requests %d served %d, want 3 and 1", e.srv.Requests(), e.srv.Served())
	}
}

// TestIoTHostnameMismatch dials the local server under a real-looking
// endpoint name; its certificate is for localhost only.
func TestIoTHostnameMismatch(t *testing.T) {
	e := newEnv(t, time.Hour)
	cfg := e.cfg
	cfg.Endpoint = "c2abc123.credentials.iot.eu-west-1.amazonaws.com"
	local := e.srv.Endpoint()
	var dialed atomic.Value
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed.Store(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, local)
	}
	p, err := credentials.NewIoTProvider(cfg, credentials.WithDialer(dial), credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Retrieve(context.Background())
	watchErr(err)
	if err == nil {
		t.Fatal("Retrieve succeeded despite a host name mismatch")
	}
	for _, w := range []string{"server certificate is for localhost, 127.0.0.1", "not c2abc123.credentials.iot.eu-west-1.amazonaws.com", "describe-endpoint"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if got, _ := dialed.Load().(string); got != cfg.Endpoint+":443" {
		t.Errorf("dialed %q, want port 443 added to the endpoint", got)
	}
}

// TestIoTServerDown: connection refused is retried, then reported.
func TestIoTServerDown(t *testing.T) {
	e := newEnv(t, time.Hour)
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	p, err := credentials.NewIoTProvider(e.cfg, credentials.WithDialer(dial), credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Retrieve(context.Background())
	watchErr(err)
	if err == nil {
		t.Fatal("Retrieve succeeded with the server down")
	}
	for _, w := range []string{"connection to " + e.cfg.Endpoint + " refused", "after 3 attempts", "check [credentials] endpoint"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if d := dials.Load(); d != 3 {
		t.Errorf("dialled %d times, want 3 (MaxAttempts)", d)
	}
	var ce *credentials.Error
	if !errors.As(err, &ce) || !ce.Retryable {
		t.Errorf("connection refused should be retryable: %#v", ce)
	}

	// Back up: the next Retrieve works.
	if err := e.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Retrieve(context.Background()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// TestIoTSlowServer: a server that never answers runs into the request
// timeout on every attempt.
func TestIoTSlowServer(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.srv.SetDelay(time.Hour)
	cfg := e.cfg
	cfg.RequestTimeout = time.Second
	cfg.MaxAttempts = 2
	p, err := credentials.NewIoTProvider(cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.Retrieve(context.Background())
	watchErr(err)
	if err == nil {
		t.Fatal("Retrieve succeeded against a server that never answers")
	}
	// A sanity bound far above 2×1 s: without the timeout this would wait
	// for the server's hour.
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("Retrieve took %v", el)
	}
	for _, w := range []string{"no answer from " + e.cfg.Endpoint + " within the timeout", "request 1s", "after 2 attempts"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	eventually(t, "two requests at the server", func() bool { return e.srv.Requests() == 2 })
}

// TestIoTCallerCancel: a cancelled caller gets its answer at once, not
// after the retries.
func TestIoTCallerCancel(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.srv.SetDelay(time.Hour)
	p, err := credentials.NewIoTProvider(e.cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		eventually(t, "request at the server", func() bool { return e.srv.Requests() == 1 })
		cancel()
	}()
	_, err = p.Retrieve(ctx)
	watchErr(err)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if e.srv.Requests() != 1 {
		t.Fatalf("server saw %d requests after cancel, want 1", e.srv.Requests())
	}
}

// TestIoTBadAnswers: a 200 that is not the credentials JSON is reported
// without quoting the body.
func TestIoTBadAnswers(t *testing.T) {
	e := newEnv(t, time.Hour)
	tok := secret("SECRETTOKEN-in-a-broken-body-0123456789")
	cases := []struct {
		issue iotlocal.IssueFunc
		want  string
	}{
		{func(context.Context, iotlocal.Request) (iotlocal.Credentials, error) {
			return iotlocal.Credentials{AccessKeyID: "ASIAXXXXXXXXXXXXXXXX", SessionToken: tok, Expiration: time.Now().Add(time.Hour)}, nil
		}, "lacks credentials.secretAccessKey"},
		{func(context.Context, iotlocal.Request) (iotlocal.Credentials, error) {
			return iotlocal.Credentials{AccessKeyID: "ASIAXXXXXXXXXXXXXXXX", SecretAccessKey: secret("S3cr3t/broken+expiry"), SessionToken: tok,
				Expiration: time.Now().Add(-time.Hour)}, nil
		}, "is not after the system clock"},
	}
	for _, tc := range cases {
		srv, err := iotlocal.Start(iotlocal.Config{TLS: e.pki.ServerTLS(), Issue: tc.issue})
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.cfg
		cfg.Endpoint = srv.Endpoint()
		p, err := credentials.NewIoTProvider(cfg, credentials.WithLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Retrieve(context.Background())
		watchErr(err)
		_ = srv.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  credentials.Config
		want string
	}{
		{credentials.Config{}, "source is empty"},
		{credentials.Config{Source: "vault"}, `source "vault" is unknown`},
		{credentials.Config{Source: "iot"}, "endpoint is required"},
		{credentials.Config{Source: "iot", Endpoint: "https://x.example/", RoleAlias: "a", ThingName: "t", Cert: "c", Key: "k"}, "without scheme or path"},
		{credentials.Config{Source: "iot", Endpoint: "x.example:0", RoleAlias: "a", ThingName: "t", Cert: "c", Key: "k"}, "invalid port"},
		{credentials.Config{Source: "iot", Endpoint: "x.example", RoleAlias: "a/b", ThingName: "t", Cert: "c", Key: "k"}, "alias name only"},
		{credentials.Config{Source: "static", AccessKeyID: "AKIAEXAMPLE"}, "secret_access_key is required"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		watchErr(err)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	ok := credentials.Config{Source: "iot", Endpoint: "x.credentials.iot.eu-west-1.amazonaws.com", RoleAlias: "kvscamd", ThingName: "t", Cert: "c", Key: "k"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
}

// TestIoTOldTLS: a server that offers only TLS 1.1 is refused.
func TestIoTOldTLS(t *testing.T) {
	e := newEnv(t, time.Hour)
	tlsCfg := e.pki.ServerTLS()
	tlsCfg.MinVersion, tlsCfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	srv, err := iotlocal.Start(iotlocal.Config{TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := e.cfg
	cfg.Endpoint = srv.Endpoint()
	p, err := credentials.New(context.Background(), cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Retrieve(context.Background())
	watchErr(err)
	if err == nil || !strings.Contains(err.Error(), "TLS 1.2 or newer") || srv.Requests() != 0 {
		t.Fatalf("Retrieve = %v (requests %d), want a TLS version error", err, srv.Requests())
	}
	if strings.HasPrefix(err.Error(), "failed to refresh") {
		t.Errorf("error starts with the cache's prefix instead of the cause: %v", err)
	}
}

// TestIoTSNI: the endpoint's host name goes out as SNI and is what the
// server certificate is checked against, even when the address dialled
// differs.
func TestIoTSNI(t *testing.T) {
	e := newEnv(t, time.Hour)
	const host = "c2abc123.credentials.iot.eu-west-1.amazonaws.com"
	leaf, err := e.pki.CA.IssueServer(host)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := e.pki.ServerTLS()
	tlsCfg.Certificates = []tls.Certificate{leaf.TLSCertificate()}
	var sni atomic.Value
	srv, err := iotlocal.Start(iotlocal.Config{TLS: tlsCfg, Issue: func(ctx context.Context, req iotlocal.Request) (iotlocal.Credentials, error) {
		sni.Store(req.SNI)
		return iotlocal.RandomCredentials(ctx, req)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	leakWatch.mu.Lock()
	leakWatch.servers = append(leakWatch.servers, srv)
	leakWatch.mu.Unlock()
	local := srv.Endpoint()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, local)
	}
	cfg := e.cfg
	cfg.Endpoint = host
	p, err := credentials.NewIoTProvider(cfg, credentials.WithDialer(dial), credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Retrieve(context.Background())
	watchErr(err)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := sni.Load().(string); got != host {
		t.Fatalf("server saw SNI %q, want %q", got, host)
	}
}
