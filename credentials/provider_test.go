package credentials_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/internal/clock"
)

// retrieveFast calls Retrieve with a deadline far shorter than any network
// fetch in these tests can take while the server is held up, so success
// proves the answer came from memory.
func retrieveFast(t *testing.T, p credentials.Provider) credentials.Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := p.Retrieve(ctx)
	watchErr(err)
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	return c
}

// TestRefreshAheadOfExpiry: with Run active, new credentials are fetched
// in the background while the old ones are still valid, Retrieve never
// waits for that fetch, and callers move to the new credentials before
// the old ones expire.
func TestRefreshAheadOfExpiry(t *testing.T) {
	const lifetime = 8 * time.Second // generous: TLS under emulation (qemu-user) is slow
	e := newEnv(t, lifetime)
	cfg := e.cfg
	cfg.RequestTimeout = time.Second // a held-up fetch fails over to a retry
	p, err := credentials.New(context.Background(), cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run returned %v on cancellation, want nil", err)
		}
	}()

	eventually(t, "first background fetch", func() bool { return e.srv.Served() == 1 })
	a := retrieveFast(t, p)
	realA := e.srv.Issued()[0]
	if a.AccessKeyID != realA.AccessKeyID {
		t.Fatal("first Retrieve did not return the first issued credentials")
	}

	// Hold up the next fetch at the server and wait until it is under way.
	e.srv.SetDelay(time.Hour)
	eventually(t, "background refresh request", func() bool { return e.srv.Requests() == 2 })
	if now := time.Now(); !now.Before(realA.Expiration) {
		t.Fatalf("refresh started at %v, after the credentials expired at %v", now, realA.Expiration)
	}
	// The refresh is stuck at the server; callers still get the old
	// credentials from memory at once.
	if c := retrieveFast(t, p); c.AccessKeyID != a.AccessKeyID {
		t.Fatal("Retrieve changed credentials while the refresh was pending")
	}
	e.srv.SetDelay(0) // the retry after the client's timeout succeeds
	eventually(t, "second credentials served", func() bool { return e.srv.Served() == 2 })
	b := e.srv.Issued()[1]

	// Callers move to b, and never hold expired credentials meanwhile.
	eventually(t, "Retrieve to return the new credentials", func() bool {
		c := retrieveFast(t, p)
		if now := time.Now(); !c.Expires.After(now) {
			t.Fatalf("Retrieve returned credentials that expired at %v (now %v)", c.Expires, now)
		}
		return c.AccessKeyID == b.AccessKeyID
	})
	if time.Now().After(realA.Expiration) {
		t.Errorf("callers moved to new credentials only after the old ones expired")
	}
	st := p.Status()
	watch("%+v", st)
	if st.Refreshes < 2 || st.AccessKey != credentials.RedactAccessKeyID(b.AccessKeyID) {
		t.Errorf("status %+v", st)
	}
}

// TestInvalidate: Invalidate forces a new fetch, except right after one.
func TestInvalidate(t *testing.T) {
	e := newEnv(t, time.Hour)
	clk := clock.NewFake(time.Now())
	p, err := credentials.New(context.Background(), e.cfg, credentials.WithLogger(testLogger(t)), credentials.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	a := retrieveFastOrNet(t, p)
	p.Invalidate() // fetched moments ago: kept
	if c := retrieveFast(t, p); c.AccessKeyID != a.AccessKeyID || e.srv.Served() != 1 {
		t.Fatalf("Invalidate right after a fetch caused another fetch (served %d)", e.srv.Served())
	}
	clk.Advance(15 * time.Second)
	p.Invalidate()
	b := retrieveFastOrNet(t, p)
	if b.AccessKeyID == a.AccessKeyID || e.srv.Served() != 2 {
		t.Fatalf("Invalidate did not force a refresh (served %d)", e.srv.Served())
	}

	// With Run active, Invalidate alone triggers the fetch.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	clk.Advance(15 * time.Second)
	p.Invalidate()
	eventually(t, "background fetch after Invalidate", func() bool { return e.srv.Served() == 3 })
	if c := retrieveFastOrNet(t, p); c.AccessKeyID != e.srv.Issued()[2].AccessKeyID {
		t.Fatal("Retrieve after Invalidate did not return the newest credentials")
	}
}

// retrieveFastOrNet allows a network fetch (a few seconds at most).
func retrieveFastOrNet(t *testing.T, p credentials.Provider) credentials.Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.Retrieve(ctx)
	watchErr(err)
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	return c
}

// TestKeepServingWhileEndpointDown: when a due refresh fails, the old
// credentials are handed out until shortly before they expire.
func TestKeepServingWhileEndpointDown(t *testing.T) {
	e := newEnv(t, time.Hour)
	clk := clock.NewFake(time.Now())
	clk.AutoAdvance() // the provider's retry waits pass at once
	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	opts := []credentials.Option{credentials.WithLogger(testLogger(t)), credentials.WithClock(clk), credentials.WithDialer(dial)}
	base, err := credentials.NewIoTProvider(e.cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	r := credentials.NewRefresher(base, "iot", time.Millisecond, opts...)
	a := retrieveFastOrNet(t, r)
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(45 * time.Minute) // refresh due (30–36 min), credentials valid for 15 more
	c, err := r.Retrieve(context.Background())
	watchErr(err)
	if err != nil || c.AccessKeyID != a.AccessKeyID {
		t.Fatalf("with the endpoint down and valid credentials held, Retrieve = %v", err)
	}
	st := r.Status()
	watch("%+v", st)
	if dials.Load() == 1 || st.Failures != 1 || !strings.Contains(st.LastError, "refused") {
		t.Fatalf("no refresh was attempted: dials %d, status %+v", dials.Load(), st)
	}
	clk.Advance(15 * time.Minute) // now at expiry
	_, err = r.Retrieve(context.Background())
	watchErr(err)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("expired credentials and endpoint down: Retrieve = %v, want the connection error", err)
	}
	if err := e.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if c := retrieveFastOrNet(t, r); c.AccessKeyID == a.AccessKeyID {
		t.Fatal("after the endpoint came back, Retrieve returned the expired credentials")
	}
}

// TestRunRetriesUntilEndpointUp: Run keeps trying, with back-off, while
// the endpoint is down, and succeeds once it is back.
func TestRunRetriesUntilEndpointUp(t *testing.T) {
	e := newEnv(t, time.Hour)
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	p, err := credentials.New(context.Background(), e.cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	eventually(t, "two failed background refreshes", func() bool { return p.Status().Failures >= 2 })
	if err := e.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a background refresh after restart", func() bool { return e.srv.Served() == 1 })
	retrieveFast(t, p)
}

func TestAdjustExpiresBy(t *testing.T) {
	clk := clock.NewFake(time.Now())
	r := credentials.NewRefresher(credentials.StaticProvider{}, "test", 0, credentials.WithClock(clk))
	exp := clk.Now().Add(10 * time.Minute)
	in := credentials.Credentials{AccessKeyID: "A", SecretAccessKey: "S", CanExpire: true, Expires: exp}
	out := r.AdjustExpiresBy(in, -5*time.Minute)
	if want := exp.Add(-time.Minute); !out.Expires.Equal(want) {
		t.Errorf("window on 10 min credentials: expires %v, want %v (a tenth of the lifetime)", out.Expires, want)
	}
	in.Expires = clk.Now().Add(2 * time.Hour)
	out = r.AdjustExpiresBy(in, -5*time.Minute)
	if want := in.Expires.Add(-5 * time.Minute); !out.Expires.Equal(want) {
		t.Errorf("window on 2 h credentials: expires %v, want %v", out.Expires, want)
	}
}

// TestConcurrentRetrieve hammers the provider from many goroutines while
// credentials rotate every second; run under -race.
func TestConcurrentRetrieve(t *testing.T) {
	e := newEnv(t, 2*time.Second)
	p, err := credentials.New(context.Background(), e.cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	var wg sync.WaitGroup
	var errs atomic.Int32
	stop := time.Now().Add(2500 * time.Millisecond)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				c, err := p.Retrieve(context.Background())
				if err != nil || !c.HasKeys() {
					watchErr(err)
					errs.Add(1)
				}
				if g == 0 {
					p.Invalidate()
				}
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d Retrieve calls failed", errs.Load())
	}
	// Two and a half seconds of 2 s credentials need a handful of fetches;
	// many more would mean callers or Invalidate bypass the sharing.
	if s := e.srv.Served(); s < 2 || s > 10 {
		t.Fatalf("server handed out %d credentials", s)
	}
}

func TestStaticSource(t *testing.T) {
	sk := secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYSTATICKEY1")
	tok := secret("FwoGZXIvYXdzEStaticSessionToken0123456789abcdef")
	cfg := credentials.Config{Source: "static", AccessKeyID: "AKIAIOSFODNN7EXAMPLE",
		SecretAccessKey: credentials.Secret(sk), SessionToken: credentials.Secret(tok)}
	p, err := credentials.New(context.Background(), cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != "AKIAIOSFODNN7EXAMPLE" || c.SecretAccessKey != sk || c.SessionToken != tok || c.CanExpire {
		t.Fatalf("static credentials came back different (CanExpire %v)", c.CanExpire)
	}
	line, err := credentials.Check(context.Background(), cfg)
	watch("%s", line)
	if err != nil || line != "credentials: ok static, access key AKIA…MPLE, does not expire" {
		t.Fatalf("Check = %q, %v", line, err)
	}
	watch("%v %s", p, p)
}

func TestDefaultSource(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "eu-west-1")

	// Environment variables.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000001")
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret("envSecretKeyValue/0123456789abcdefghijkl"))
	t.Setenv("AWS_SESSION_TOKEN", "")
	cfg := credentials.Config{Source: "default"}
	line, err := credentials.Check(context.Background(), cfg, credentials.WithLogger(testLogger(t)))
	watch("%s", line)
	if err != nil || !strings.HasPrefix(line, "credentials: ok default chain (environment), access key AKIA…0001") {
		t.Fatalf("env: Check = %q, %v", line, err)
	}

	// Shared credentials file.
	os.Unsetenv("AWS_ACCESS_KEY_ID")
	os.Unsetenv("AWS_SECRET_ACCESS_KEY")
	fileSecret := secret("fileSecretKeyValue/0123456789abcdefghijk")
	if err := os.WriteFile(filepath.Join(dir, "credentials"),
		[]byte("[default]\naws_access_key_id = AKIAFILEEXAMPLE00002\naws_secret_access_key = "+fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := credentials.New(context.Background(), cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Retrieve(context.Background())
	watchErr(err)
	if err != nil || c.AccessKeyID != "AKIAFILEEXAMPLE00002" || c.SecretAccessKey != fileSecret {
		t.Fatalf("shared file: Retrieve = %q, %v", c.AccessKeyID, err)
	}

	// Nothing anywhere: a clear error, fast (no instance metadata probing).
	if err := os.Remove(filepath.Join(dir, "credentials")); err != nil {
		t.Fatal(err)
	}
	line, err = credentials.Check(context.Background(), cfg)
	watch("%s", line)
	watchErr(err)
	if err == nil || !strings.Contains(line, "credentials: FAIL default chain gave no credentials") || !strings.Contains(line, "AWS_ACCESS_KEY_ID") {
		t.Fatalf("no credentials: Check = %q, %v", line, err)
	}
}

// TestSecretsNeverPrinted formats every type that holds secrets in every
// way a log call or error might.
func TestSecretsNeverPrinted(t *testing.T) {
	sk := secret("formatSecretKey/0123456789abcdefghijklmn")
	tok := secret("formatSessionToken0123456789abcdefghijklmnopq")
	cfg := credentials.Config{Source: "static", AccessKeyID: "AKIAFORMATEXAMPLE001",
		SecretAccessKey: credentials.Secret(sk), SessionToken: credentials.Secret(tok)}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%T %d"} {
		fmt.Fprintf(&out, verb+"\n", cfg)
		fmt.Fprintf(&out, verb+"\n", cfg.SecretAccessKey)
		fmt.Fprintf(&out, verb+"\n", &cfg)
		fmt.Fprintf(&out, verb+"\n", struct{ C credentials.Config }{cfg})
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(js)
	js, _ = json.Marshal(struct{ S credentials.Secret }{cfg.SessionToken})
	out.Write(js)
	log := slog.New(slog.NewJSONHandler(&out, nil))
	log.Info("cfg", "cfg", cfg, "secret", cfg.SecretAccessKey, "ptr", &cfg)
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "cfg", cfg, "secret", cfg.SecretAccessKey)
	p, err := credentials.New(context.Background(), cfg, credentials.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, verb+"\n", c)
		fmt.Fprintf(&out, verb+"\n", &c)
	}
	log.Info("creds", "creds", c)
	js, _ = json.Marshal(struct{ C credentials.Credentials }{c})
	out.Write(js)
	js, _ = json.Marshal(p.Status())
	out.Write(js)
	fmt.Fprintf(&out, "%v %+v", p, p.Status())
	watch("%s", out.String())
	if leaks := scanForSecrets(out.String(), []string{sk, tok}); len(leaks) > 0 {
		t.Fatalf("secret printed: %v", leaks)
	}
	if !strings.Contains(out.String(), "[redacted]") || !strings.Contains(out.String(), "AKIA…E001") {
		t.Fatalf("redacted forms missing from output:\n%s", out.String())
	}
	if cfg.SecretAccessKey.Reveal() != sk {
		t.Fatal("Reveal does not return the secret")
	}
}

func BenchmarkProviderRetrieve(b *testing.B) {
	cfg := credentials.Config{Source: "static", AccessKeyID: "AKIABENCHEXAMPLE0001", SecretAccessKey: "benchsecret"}
	p, err := credentials.New(context.Background(), cfg, credentials.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Retrieve(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRunNoProgressBacksOff: a source that keeps returning the same
// credentials (it caches on its own) must not make Run spin.
func TestRunNoProgressBacksOff(t *testing.T) {
	exp := time.Now().Add(time.Second)
	var calls atomic.Int32
	base := credentials.ProviderFunc(func(context.Context) (credentials.Credentials, error) {
		calls.Add(1)
		return credentials.Credentials{AccessKeyID: "AKIASAMESAMESAME0001", SecretAccessKey: "s", CanExpire: true, Expires: exp}, nil
	})
	r := credentials.NewRefresher(base, "test", 10*time.Millisecond, credentials.WithLogger(testLogger(t)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	eventually(t, "the credentials' expiry", func() bool { return time.Now().After(exp.Add(200 * time.Millisecond)) })
	// Back-off from 10 ms doubling gives about ten calls in 1.2 s; a
	// spinning loop gives thousands.
	if n := calls.Load(); n < 2 || n > 50 {
		t.Fatalf("base called %d times", n)
	}
}
