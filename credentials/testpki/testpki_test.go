package testpki_test

import (
	"crypto/rsa"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials/testpki"
)

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	s, err := testpki.Generate(dir, "cam-0042")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	verify := func(l *testpki.Leaf, roots *x509.CertPool, usage x509.ExtKeyUsage, at time.Time) error {
		_, err := l.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: at})
		return err
	}
	if err := verify(s.Client.Leaf, s.CA.Pool(), x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Errorf("client: %v", err)
	}
	if _, err := s.Server.Leaf.Cert.Verify(x509.VerifyOptions{Roots: s.CA.Pool(), DNSName: "localhost"}); err != nil {
		t.Errorf("server for localhost: %v", err)
	}
	if err := s.Server.Leaf.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("server for 127.0.0.1: %v", err)
	}
	if verify(s.ExpiredClient.Leaf, s.CA.Pool(), x509.ExtKeyUsageClientAuth, now) == nil {
		t.Error("expired client verifies now")
	}
	if verify(s.FutureClient.Leaf, s.CA.Pool(), x509.ExtKeyUsageClientAuth, now) == nil {
		t.Error("future client verifies now")
	}
	if verify(s.OtherClient.Leaf, s.CA.Pool(), x509.ExtKeyUsageClientAuth, now) == nil {
		t.Error("client of the other CA verifies against the CA")
	}
	for _, f := range []testpki.Files{s.Server, s.Client, s.ExpiredClient, s.FutureClient, s.OtherClient} {
		if f.Leaf.Cert.Subject.CommonName != "cam-0042" && f.Leaf != s.Server.Leaf {
			t.Errorf("%s: CN %q", f.Cert, f.Leaf.Cert.Subject.CommonName)
		}
		st, err := os.Stat(f.Key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f.Key, st.Mode().Perm())
		}
	}
	rsaLeaf, err := s.CA.Issue(testpki.LeafOptions{CommonName: "rsa", Client: true, KeyType: testpki.RSA})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rsaLeaf.Key.(*rsa.PrivateKey); !ok {
		t.Errorf("RSA requested, got %T", rsaLeaf.Key)
	}
}
