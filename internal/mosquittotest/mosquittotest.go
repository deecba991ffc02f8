// Package mosquittotest runs a real mosquitto broker for tests: TLS with
// client certificates required, the certificate's common name as the user
// name, and an ACL that lets a device (common name = thing name) use only
// its own thing's topics, as an AWS IoT policy with thing policy
// variables would. One extra identity, Cloud, may use every topic: the
// test plays AWS IoT's services with it.
//
// The broker is a child process owned by the Broker; Stop (registered
// with t.Cleanup) kills it. Certificates are generated per broker.
package mosquittotest

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials/testpki"
)

// Cloud is the common name of the identity allowed on every topic.
const Cloud = "aws-cloud"

// Claim is the common name tests give a fleet's claim certificate. Every
// client may use the fleet provisioning topics (a device renews its
// certificate there); the claim has no thing of its own, so that is all it
// may use, as the claim policy in AWS IoT allows.
const Claim = "fleet-claim"

// startTimeout bounds how long the broker may take to accept connections.
const startTimeout = 10 * time.Second

// acl mirrors the daemon's IoT policy: %u is the client's certificate CN.
const acl = `pattern readwrite $aws/things/%u/#
pattern readwrite $aws/commands/things/%u/#
pattern readwrite kvscamd/%u/#
pattern readwrite $aws/certificates/create-from-csr/json/#
pattern readwrite $aws/provisioning-templates/+/provision/json/#

user ` + Cloud + `
topic readwrite $aws/#
topic readwrite kvscamd/#
`

// Broker is one running mosquitto.
type Broker struct {
	t    testing.TB
	Dir  string
	Port int
	CA   *testpki.CA
	// CAFile is the CA certificate clients verify the broker with.
	CAFile string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// Start starts a broker on a free loopback port. It fails the test, with
// the package to install, if mosquitto is not there.
func Start(t testing.TB) *Broker {
	t.Helper()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Fatalf("mosquitto not found (%v): install it with apt-get install mosquitto mosquitto-clients", err)
	}
	dir := t.TempDir()
	ca, err := testpki.NewCA("kvscamd test broker CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	sf, err := srv.Write(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, Dir: dir, CA: ca, CAFile: filepath.Join(dir, "ca.pem")}
	if err := ca.WriteCert(b.CAFile); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var conf strings.Builder
	fmt.Fprintf(&conf, "per_listener_settings false\npersistence false\nlog_dest stderr\nlog_type all\n")
	if os.Geteuid() == 0 {
		conf.WriteString("user root\n") // else it drops to a user that cannot read the temp dir
	}
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n", b.Port, b.CAFile, sf.Cert, sf.Key)
	fmt.Fprintf(&conf, "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\nacl_file %s\n", filepath.Join(dir, "acl"))
	if err := os.WriteFile(filepath.Join(dir, "acl"), []byte(acl), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	b.start()
	return b
}

// Addr is host:port of the broker.
func (b *Broker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.Port) }

func (b *Broker) start() {
	b.t.Helper()
	lf, err := os.OpenFile(filepath.Join(b.Dir, "mosquitto.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	cmd := exec.Command("mosquitto", "-c", filepath.Join(b.Dir, "mosquitto.conf"))
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		b.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.log = cmd, lf
	b.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			b.t.Fatalf("mosquitto exited at start:\n%s", b.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto does not accept connections on %s after %s:\n%s", b.Addr(), startTimeout, b.Log())
		}
	}
}

// Stop kills the broker; retained messages and sessions are gone
// (persistence is off).
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, lf := b.cmd, b.log
	b.cmd, b.log = nil, nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	for range 200 { // until the port is free again
		c, err := net.DialTimeout("tcp", b.Addr(), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	lf.Close()
}

// Start starts a stopped broker again on the same port.
func (b *Broker) Start() {
	b.t.Helper()
	b.start()
}

// Restart stops the broker and starts it again on the same port.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Log returns what the broker logged so far.
func (b *Broker) Log() string {
	data, _ := os.ReadFile(filepath.Join(b.Dir, "mosquitto.log"))
	return string(data)
}

// ClientFiles issues a client certificate with common name cn and
// writes it (and its key, mode 0600) into the broker's directory.
func (b *Broker) ClientFiles(cn string) testpki.Files {
	b.t.Helper()
	leaf, err := b.CA.IssueClient(cn)
	if err != nil {
		b.t.Fatal(err)
	}
	f, err := leaf.Write(b.Dir, "client-"+cn)
	if err != nil {
		b.t.Fatal(err)
	}
	return f
}

// ClientTLS returns a TLS configuration for a client with common name cn.
func (b *Broker) ClientTLS(cn string) *tls.Config {
	b.t.Helper()
	leaf, err := b.CA.IssueClient(cn)
	if err != nil {
		b.t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}, RootCAs: b.CA.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}
