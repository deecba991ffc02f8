package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials/identity"
	"github.com/kvscamd/kvscamd/credentials/iotlocal"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
	"github.com/kvscamd/kvscamd/internal/provisiontest"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// TestFleetProvisioningFirstBoot runs `kvscamd run` as its own process on
// a device that has only the fleet's claim certificate. The first run is
// killed (SIGKILL, as a power cut) after AWS IoT signed its CSR and
// before RegisterThing answered; the second resumes with the certificate
// already issued, registers the thing, and uploads video to the local KVS
// endpoint with credentials the IoT credentials endpoint issued to the new
// certificate, never to the claim.
func TestFleetProvisioningFirstBoot(t *testing.T) {
	const (
		template = "kvscamd-fleet"
		serial   = "e2e00001"
		thing    = "cam-" + serial
	)
	clip := testclips.Get("baseline-repeat.h264")
	broker := mosquittotest.Start(t)
	cloud := provisiontest.Start(t, broker, template)
	cloud.OnRegister(func(n int) provisiontest.Answer { return provisiontest.Answer{Silent: n == 1} })
	// Certificates that live long enough not to be renewed by the daemon
	// itself during the test.
	cloud.Lifetime = 90 * 24 * time.Hour
	claim := broker.ClientFiles(mosquittotest.Claim)

	kvs := kvslocal.Start(t, kvslocal.Options{})
	if _, err := kvs.CreateStream(thing, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	// The credentials endpoint trusts the CA that signs the devices'
	// certificates, like AWS IoT trusts the certificates it issued.
	srvLeaf, err := broker.CA.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var askedBy []string
	// Serial numbers of the client certificates the credentials endpoint
	// saw, in order: they tell the renewed certificate from the first.
	var presented []string
	issue := iotlocal.IssueFrom(kvs.IssueCredentials)
	iot, err := iotlocal.Start(iotlocal.Config{
		TLS: &tls.Config{Certificates: []tls.Certificate{srvLeaf.TLSCertificate()}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: broker.CA.Pool(), MinVersion: tls.VersionTLS12,
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if c, err := x509.ParseCertificate(raw[0]); err == nil {
					mu.Lock()
					presented = append(presented, c.SerialNumber.String())
					mu.Unlock()
				}
				return nil
			}},
		Issue: func(ctx context.Context, req iotlocal.Request) (iotlocal.Credentials, error) {
			mu.Lock()
			askedBy = append(askedBy, req.CertCN+"/"+req.Thing)
			mu.Unlock()
			return issue(ctx, req)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer iot.Close()

	state := filepath.Join(t.TempDir(), "state")
	cfgPath := filepath.Join(t.TempDir(), "kvscamd.toml")
	body := fmt.Sprintf(`region = "us-west-2"
state_dir = %q
clock_sync = "trust"

[credentials]
source = "iot"
endpoint = %q
role_alias = %q
ca = %q

[kvs]
endpoint = %q

[mqtt]
endpoint = %q

[provisioning]
template = %q
claim_cert = %q
claim_key = %q
ca = %q
serial_number = %q

[[stream]]
driver = "file"
path = %q
loop = true
realtime = true
fps = %d
keyframe_interval = "1s"
ring_size = "64MiB"
`, state, iot.Endpoint(), iotlocal.DefaultRoleAlias, broker.CAFile, kvs.URL, broker.Addr(), template,
		claim.Cert, claim.Key, broker.CAFile, serial, clip.Path(), clip.FPS)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runBinary(t, "check", "-config", cfgPath); code != 0 ||
		!strings.Contains(out, "provisioning: ok not provisioned yet; "+broker.Addr()+" accepts the claim certificate") {
		t.Fatalf("check before provisioning: exit %d\n%s%s", code, out, errOut)
	}

	start := func() (*exec.Cmd, *syncBuffer) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "run", "-config", cfgPath, "-socket", filepath.Join(t.TempDir(), "s.sock"))
		cmd.Env = append(os.Environ(), asKvscamd+"=1")
		var errOut syncBuffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, &errOut
	}

	// First boot, cut between the CSR's answer and RegisterThing's.
	first, firstLog := start()
	cloud.WaitRequests(1, 1)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	idDir := filepath.Join(state, "identity")
	if _, err := os.Stat(filepath.Join(idDir, "current")); err == nil {
		t.Fatalf("an identity was committed without RegisterThing's answer; log:\n%s", firstLog)
	}

	// Second boot resumes, registers and uploads.
	cloud.OnRegister(nil)
	second, secondLog := start()
	waitPersisted(t, kvs, thing, 3, secondLog)
	if csrs, regs := cloud.Counts(); csrs != 1 || regs != 2 {
		t.Fatalf("%d CSRs and %d registrations, want 1 and 2 (resumed with the certificate issued before the cut); first run:\n%s\nsecond run:\n%s", csrs, regs, firstLog, secondLog)
	}
	firstSerial := certSerial(t, filepath.Join(state, "identity", "current", identity.CertName))

	// Renewal while the daemon uploads: a new key and certificate, and
	// the upload goes on.
	before := len(persisted(kvs, thing))
	if code, out, errOut := runBinary(t, "provision", "-config", cfgPath, "-renew"); code != 0 || !strings.Contains(out, "renewed: thing "+thing) {
		t.Fatalf("provision -renew: %d %q %q", code, out, errOut)
	}
	renewed := certSerial(t, filepath.Join(state, "identity", "current", identity.CertName))
	if renewed == firstSerial {
		t.Fatal("renewal kept the certificate")
	}
	waitPersisted(t, kvs, thing, before+3, secondLog)
	stop(t, second, secondLog)

	// The next start fetches credentials with the renewed certificate.
	mu.Lock()
	seen := len(presented)
	mu.Unlock()
	third, thirdLog := start()
	waitPersisted(t, kvs, thing, len(persisted(kvs, thing))+2, thirdLog)
	stop(t, third, thirdLog)
	mu.Lock()
	later := append([]string(nil), presented[seen:]...)
	mu.Unlock()
	if len(later) == 0 || later[0] != renewed {
		t.Fatalf("after the restart the credentials endpoint saw certificates %v, want the renewed %s", later, renewed)
	}

	if e := cloud.Errors(); len(e) > 0 {
		t.Fatalf("the provisioning service saw bad requests: %v", e)
	}
	mu.Lock()
	asked := append([]string(nil), askedBy...)
	mu.Unlock()
	if len(asked) == 0 {
		t.Fatal("no credentials were asked for")
	}
	for _, a := range asked {
		if a != thing+"/"+thing {
			t.Fatalf("credentials asked for as %q, want only %s/%s (the claim certificate is for provisioning only)", a, thing, thing)
		}
	}
	for path, want := range map[string]os.FileMode{
		idDir: identity.DirMode,
		filepath.Join(idDir, "current", identity.KeyName): identity.KeyMode,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if code, out, errOut := runBinary(t, "check", "-config", cfgPath); !strings.Contains(out, "provisioning: ok thing "+thing) {
		t.Fatalf("check after provisioning: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runBinary(t, "provision", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "already provisioned") || !strings.Contains(out, thing) {
		t.Fatalf("provision after provisioning: %d %q %q", code, out, errOut)
	}
}

// waitPersisted waits until kvs persisted n fragments on name.
func waitPersisted(t *testing.T, kvs *kvslocal.Server, name string, n int, log *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := kvs.Wait(ctx, name, func(st kvslocal.State) bool {
		got := 0
		for _, f := range st.Fragments {
			if f.Persisted {
				got++
			}
		}
		return got >= n
	})
	if err != nil {
		t.Fatalf("%d fragments not persisted on %s within 60 s (%v); log:\n%s", n, name, err, log)
	}
}

// stop ends a daemon with SIGTERM and expects a clean exit.
func stop(t *testing.T, cmd *exec.Cmd, log *syncBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run ended with %v; log:\n%s", err, log)
	}
}

func certSerial(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s is not PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}
