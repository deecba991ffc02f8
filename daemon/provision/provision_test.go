package provision_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials/identity"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/provision"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
	"github.com/kvscamd/kvscamd/internal/provisiontest"
)

const (
	template = "kvscamd-fleet"
	serial   = "10000000c0ffee01"
	thing    = "cam-" + serial
)

type fixture struct {
	broker *mosquittotest.Broker
	svc    *provisiontest.Service
	opts   provision.Options
	clock  *clock.Fake
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := mosquittotest.Start(t)
	svc := provisiontest.Start(t, b, template)
	claim := b.ClientFiles(mosquittotest.Claim)
	clk := clock.NewFake(time.Now())
	clk.AutoAdvance()
	return &fixture{broker: b, svc: svc, clock: clk, opts: provision.Options{
		Config: config.Provisioning{
			Template:    template,
			Endpoint:    b.Addr(),
			ClaimCert:   claim.Cert,
			ClaimKey:    claim.Key,
			CA:          b.CAFile,
			Dir:         filepath.Join(t.TempDir(), "identity"),
			KeyType:     config.KeyECDSAP256,
			RenewBefore: config.Duration(config.DefaultRenewBefore),
			Parameters:  map[string]string{"Site": "lab"},
		},
		Serial: func() (string, error) { return serial, nil },
		Clock:  clk,
	}}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// connectAs proves the broker accepts the certificate pair as thing by
// subscribing to one of the thing's own topics.
func connectAs(t *testing.T, f *fixture, cert, key, clientID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := mqtt.Connect(ctx, mqtt.ConnOptions{
		Endpoint: f.broker.Addr(), ClientID: clientID, KeepAlive: time.Minute,
		TLS: func() (*tls.Config, error) {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, err
			}
			return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: f.broker.CA.Pool(), MinVersion: tls.VersionTLS12}, nil
		},
		Routes: []mqtt.Route{{Filter: "kvscamd/" + clientID + "/presence", Handle: func(mqtt.Message) {}}},
	})
	if err != nil {
		t.Fatalf("connect as %s with %s: %v\n%s", clientID, cert, err, f.broker.Log())
	}
	conn.Close()
}

// First boot: the device key is made here with the right modes, the CSR
// is signed, the thing registered with the serial number and the
// template's parameters, and the new identity connects as its thing.
func TestFirstBoot(t *testing.T) {
	f := newFixture(t)
	var lines []string
	id, err := provision.Run(context.Background(), f.opts, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	if id.ThingName != thing || id.Template != template || id.CertificateID == "" {
		t.Fatalf("identity = %+v", id)
	}
	csrs, regs := f.svc.Counts()
	if csrs != 1 || regs != 1 {
		t.Fatalf("%d CSRs and %d registrations, want 1 and 1", csrs, regs)
	}
	reg := f.svc.Registered()[0]
	if reg.Parameters["SerialNumber"] != serial || reg.Parameters["Site"] != "lab" || reg.CertificateID != id.CertificateID {
		t.Fatalf("registration = %+v", reg)
	}
	if e := f.svc.Errors(); len(e) > 0 {
		t.Fatalf("the service saw bad requests: %v", e)
	}
	st := f.opts.Config.Store()
	if m := mode(t, f.opts.Config.Dir); m != identity.DirMode {
		t.Errorf("identity dir mode %v, want %v", m, identity.DirMode)
	}
	if m := mode(t, filepath.Dir(st.KeyFile())); m != identity.DirMode {
		t.Errorf("generation dir mode %v, want %v", m, identity.DirMode)
	}
	if m := mode(t, st.KeyFile()); m != identity.KeyMode {
		t.Errorf("key mode %v, want %v", m, identity.KeyMode)
	}
	if _, err := os.Stat(filepath.Join(f.opts.Config.Dir, "pending")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending left after the commit: %v", err)
	}
	certPEM, err := os.ReadFile(st.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !id.NotAfter.Equal(cert.NotAfter) {
		t.Errorf("NotAfter %v, certificate says %v", id.NotAfter, cert.NotAfter)
	}
	if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], thing) {
		t.Errorf("status lines %q do not end with the thing name", lines)
	}
	connectAs(t, f, st.CertFile(), st.KeyFile(), thing)

	// A second run finds the identity and asks the cloud nothing.
	again, err := provision.Run(context.Background(), f.opts, nil)
	if err != nil || again.CertificateID != id.CertificateID {
		t.Fatalf("second run: %+v, %v", again, err)
	}
	if csrs, regs := f.svc.Counts(); csrs != 1 || regs != 1 {
		t.Fatalf("second run asked the cloud again: %d CSRs, %d registrations", csrs, regs)
	}
}

// A refusal is reported with the service's code and message and retried;
// the retry starts from a new certificate.
func TestRejectionRetried(t *testing.T) {
	f := newFixture(t)
	f.svc.OnRegister(func(n int) provisiontest.Answer {
		if n == 1 {
			return provisiontest.Answer{Reject: &provisiontest.Rejection{StatusCode: 400, ErrorCode: "InvalidParameters", ErrorMessage: "the pre-provisioning hook refused the device"}}
		}
		return provisiontest.Answer{}
	})
	var mu sync.Mutex
	var lines []string
	id, err := provision.Run(context.Background(), f.opts, func(s string) { mu.Lock(); lines = append(lines, s); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, "400 InvalidParameters: the pre-provisioning hook refused the device") || !strings.Contains(joined, "retrying in") {
		t.Fatalf("status lines do not report the refusal and the retry:\n%s", joined)
	}
	csrs, regs := f.svc.Counts()
	if csrs != 2 || regs != 2 {
		t.Fatalf("%d CSRs and %d registrations, want 2 and 2", csrs, regs)
	}
	if id.ThingName != thing {
		t.Fatalf("thing %q", id.ThingName)
	}
}

// A cut between the CSR's answer and RegisterThing's (a power cut, the
// network) resumes with the certificate already issued: no second CSR,
// the same certificate registered, the same key.
func TestResumeAfterCut(t *testing.T) {
	f := newFixture(t)
	f.svc.OnRegister(func(n int) provisiontest.Answer { return provisiontest.Answer{Silent: n == 1} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := provision.Once(ctx, f.opts, provision.Identity{Cert: f.opts.Config.ClaimCert, Key: f.opts.Config.ClaimKey})
		done <- err
	}()
	f.svc.WaitRequests(1, 1)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the first attempt succeeded without an answer")
	}
	pendingKey, err := os.ReadFile(filepath.Join(f.opts.Config.Dir, "pending", identity.KeyName))
	if err != nil {
		t.Fatalf("the pending key is gone after the cut: %v", err)
	}
	id, err := provision.Run(context.Background(), f.opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	csrs, regs := f.svc.Counts()
	if csrs != 1 || regs != 2 {
		t.Fatalf("%d CSRs and %d registrations, want 1 and 2 (resumed with the issued certificate)", csrs, regs)
	}
	key, err := os.ReadFile(f.opts.Config.Store().KeyFile())
	if err != nil || string(key) != string(pendingKey) {
		t.Fatalf("committed key differs from the one certified before the cut (%v)", err)
	}
	if r := f.svc.Registered(); len(r) != 1 || r[0].CertificateID != id.CertificateID {
		t.Fatalf("registered %+v, identity %+v", r, id)
	}
}

// An ownership token older than its hour is not presented: a new CSR is.
func TestExpiredTokenAsksAgain(t *testing.T) {
	f := newFixture(t)
	f.svc.OnRegister(func(n int) provisiontest.Answer { return provisiontest.Answer{Silent: n == 1} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := provision.Once(ctx, f.opts, provision.Identity{Cert: f.opts.Config.ClaimCert, Key: f.opts.Config.ClaimKey})
		done <- err
	}()
	f.svc.WaitRequests(1, 1)
	cancel()
	<-done
	f.clock.Step(identity.OwnershipTokenLifetime)
	if _, err := provision.Run(context.Background(), f.opts, nil); err != nil {
		t.Fatal(err)
	}
	if csrs, regs := f.svc.Counts(); csrs != 2 || regs != 2 {
		t.Fatalf("%d CSRs and %d registrations, want 2 and 2", csrs, regs)
	}
	if e := f.svc.Errors(); len(e) > 0 {
		t.Fatalf("the service saw bad requests: %v", e)
	}
}

// Renewal replaces the key and certificate in one step, and the new pair
// connects as the same thing: with the claim certificate while it is
// there, then, once it is gone, over a session authenticated with the
// current device certificate.
func TestRenew(t *testing.T) {
	f := newFixture(t)
	first, err := provision.Run(context.Background(), f.opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := f.opts.Config.Store()
	byClaim, err := provision.Renew(context.Background(), f.opts)
	if err != nil || byClaim.ThingName != thing || byClaim.CertificateID == first.CertificateID {
		t.Fatalf("renewal with the claim certificate: %+v, %v", byClaim, err)
	}
	first = byClaim
	oldKey, _ := os.ReadFile(st.KeyFile())
	// The claim certificate is gone: renewal must not need it.
	_ = os.Remove(f.opts.Config.ClaimCert)
	next, err := provision.Renew(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if next.ThingName != first.ThingName || next.CertificateID == first.CertificateID || next.Generation == first.Generation {
		t.Fatalf("renewed %+v from %+v", next, first)
	}
	newKey, _ := os.ReadFile(st.KeyFile())
	if string(newKey) == string(oldKey) {
		t.Fatal("renewal kept the old key")
	}
	connectAs(t, f, st.CertFile(), st.KeyFile(), thing)
	// Only the previous generation is kept besides the current one.
	if _, err := provision.Renew(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	gens, _ := filepath.Glob(filepath.Join(f.opts.Config.Dir, "gen-*"))
	if len(gens) != 2 {
		t.Fatalf("%d generations kept, want 2: %v", len(gens), gens)
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	year := 365 * 24 * time.Hour
	for _, c := range []struct {
		notBefore, notAfter time.Time
		want                bool
	}{
		{now.Add(-year), now.Add(60 * 24 * time.Hour), false},
		{now.Add(-year), now.Add(31 * 24 * time.Hour), false},
		{now.Add(-year), now.Add(29 * 24 * time.Hour), true},
		{now.Add(-year), now.Add(-time.Hour), true},
		{time.Time{}, now.Add(29 * 24 * time.Hour), true},
		{time.Time{}, time.Time{}, false},
		// A day-long certificate: renewed with a third of it left.
		{now.Add(-time.Hour), now.Add(23 * time.Hour), false},
		{now.Add(-17 * time.Hour), now.Add(7 * time.Hour), true},
	} {
		id := &identity.Identity{NotBefore: c.notBefore, NotAfter: c.notAfter}
		if got := provision.Due(id, now, config.DefaultRenewBefore); got != c.want {
			t.Errorf("Due(%v..%v) = %v, want %v", c.notBefore, c.notAfter, got, c.want)
		}
	}
}

func TestRejectedError(t *testing.T) {
	var r provision.Rejected
	if err := json.Unmarshal([]byte(`{"statusCode":403,"errorCode":"UnauthorizedException","errorMessage":"claim not allowed"}`), &r); err != nil {
		t.Fatal(err)
	}
	r.Step = "RegisterThing"
	if got := r.Error(); got != "provision: RegisterThing rejected: 403 UnauthorizedException: claim not allowed" {
		t.Fatalf("%q", got)
	}
}
