package certs_test

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
	"github.com/kvscamd/kvscamd/credentials/testpki"
)

func write(t *testing.T, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	pki, err := testpki.Generate(dir, "cam-0001")
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf, err := pki.CA.Issue(testpki.LeafOptions{CommonName: "cam-rsa", Client: true, KeyType: testpki.RSA})
	if err != nil {
		t.Fatal(err)
	}
	rsaFiles, err := rsaLeaf.Write(dir, "rsa")
	if err != nil {
		t.Fatal(err)
	}
	// PKCS #1 "RSA PRIVATE KEY" as older tools (and AWS IoT downloads) write it.
	rsaPKCS1 := write(t, dir, "rsa1.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Bytes: x509.MarshalPKCS1PrivateKey(rsaLeaf.Key.(*rsa.PrivateKey))}), 0o600)

	certDER := write(t, dir, "der.crt", pki.Client.Leaf.Cert.Raw, 0o644)
	empty := write(t, dir, "empty.pem", nil, 0o644)
	garbage := write(t, dir, "garbage.pem", []byte("hello\n"), 0o644)
	groupKey := write(t, dir, "group.key", pki.Client.Leaf.KeyPEM(), 0o640)
	otherKey := write(t, dir, "world.key", pki.Client.Leaf.KeyPEM(), 0o604)
	pubKey := write(t, dir, "public.pem.key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY",
		Bytes: mustPKIX(t, pki.Client.Leaf.Cert)}), 0o600)
	certAsKey := write(t, dir, "certaskey.key", pki.Client.Leaf.CertPEM(), 0o644) // no chmod hint for a non-key
	encKey := write(t, dir, "enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600)
	keyDER := write(t, dir, "der.key", mustPKCS8(t, pki.Client.Leaf), 0o600)
	missing := filepath.Join(dir, "nope.crt")

	now := time.Now()
	cases := []struct {
		name      string
		cert, key string
		want      []string // substrings of the error; nil = success
	}{
		{"valid", pki.Client.Cert, pki.Client.Key, nil},
		{"rsa pkcs8", rsaFiles.Cert, rsaFiles.Key, nil},
		{"rsa pkcs1", rsaFiles.Cert, rsaPKCS1, nil},
		{"missing cert", missing, pki.Client.Key, []string{missing, "does not exist"}},
		{"missing key", pki.Client.Cert, missing, []string{missing, "does not exist"}},
		{"der cert", certDER, pki.Client.Key, []string{certDER, "binary DER", "openssl x509 -inform der"}},
		{"der key", pki.Client.Cert, keyDER, []string{keyDER, "binary DER", "openssl pkey -inform der"}},
		{"empty cert", empty, pki.Client.Key, []string{empty, "empty"}},
		{"garbage cert", garbage, pki.Client.Key, []string{garbage, "no PEM data"}},
		{"key as cert", pki.Client.Key, pki.Client.Key, []string{pki.Client.Key, `"PRIVATE KEY"`, "swapped"}},
		{"cert as key", pki.Client.Cert, certAsKey, []string{certAsKey, `"CERTIFICATE"`, "swapped"}},
		{"public key as key", pki.Client.Cert, pubKey, []string{pubKey, "public half"}},
		{"encrypted key", pki.Client.Cert, encKey, []string{encKey, "encrypted", "passphrase"}},
		{"mismatch", pki.Client.Cert, pki.OtherClient.Key, []string{pki.OtherClient.Key, "does not belong to certificate", pki.Client.Cert}},
		{"group readable key", pki.Client.Cert, groupKey, []string{groupKey, "mode 0640", "chmod 600 " + groupKey}},
		{"world readable key", pki.Client.Cert, otherKey, []string{"mode 0604", "chmod 600 " + otherKey}},
		{"expired", pki.ExpiredClient.Cert, pki.ExpiredClient.Key, []string{pki.ExpiredClient.Cert, "expired on",
			pki.ExpiredClient.Leaf.Cert.NotAfter.UTC().Format(time.RFC3339), pki.ExpiredClient.Leaf.Cert.NotBefore.UTC().Format(time.RFC3339), "clock"}},
		{"not yet valid", pki.FutureClient.Cert, pki.FutureClient.Key, []string{pki.FutureClient.Cert, "not valid yet",
			pki.FutureClient.Leaf.Cert.NotBefore.UTC().Format(time.RFC3339), "clock"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := certs.LoadKeyPair(tc.cert, tc.key, now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("LoadKeyPair: %v", err)
				}
				if pair.Leaf == nil || len(pair.Certificate) == 0 || pair.PrivateKey == nil {
					t.Fatalf("incomplete key pair %+v", pair)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadKeyPair succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func mustPKIX(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustPKCS8(t *testing.T, l *testpki.Leaf) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadCAPool(t *testing.T) {
	dir := t.TempDir()
	pki, err := testpki.Generate(dir, "cam-0001")
	if err != nil {
		t.Fatal(err)
	}
	bundle := write(t, dir, "bundle.pem", append(pki.CA.CertPEM(), pki.OtherCA.CertPEM()...), 0o644)
	onlyKey := write(t, dir, "onlykey.pem", pki.Client.Leaf.KeyPEM(), 0o600)
	empty := write(t, dir, "empty.pem", nil, 0o644)
	if _, err := certs.LoadCAPool(bundle); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	if _, err := certs.LoadCAPool(""); err != nil {
		t.Fatalf("system store: %v", err)
	}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{empty, []string{"CA file " + empty, "contains no certificates", "empty"}},
		{onlyKey, []string{"CA file " + onlyKey, `"PRIVATE KEY"`}},
		{filepath.Join(dir, "missing.pem"), []string{"missing.pem", "does not exist"}},
	} {
		_, err := certs.LoadCAPool(tc.file)
		if err == nil {
			t.Fatalf("LoadCAPool(%s) succeeded", tc.file)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}
}

func TestClientTLSConfig(t *testing.T) {
	dir := t.TempDir()
	pki, err := testpki.Generate(dir, "cam-0001")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := certs.ClientTLSConfig(certs.Files{Cert: pki.Client.Cert, Key: pki.Client.Key, CA: pki.CAFile}, "example.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion < 0x0303 || cfg.ServerName != "example.test" || len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatalf("unexpected config: min %x sni %q certs %d", cfg.MinVersion, cfg.ServerName, len(cfg.Certificates))
	}
	// The pool must verify the server certificate the same CA issued.
	if _, err := pki.Server.Leaf.Cert.Verify(x509.VerifyOptions{Roots: cfg.RootCAs, DNSName: "localhost"}); err != nil {
		t.Fatalf("server certificate does not verify against the loaded CA: %v", err)
	}
}

// BenchmarkLoadKeyPair: the IoT provider reloads the files on every fetch.
func BenchmarkLoadKeyPair(b *testing.B) {
	pki, err := testpki.Generate(b.TempDir(), "cam-0001")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := certs.LoadKeyPair(pki.Client.Cert, pki.Client.Key, now); err != nil {
			b.Fatal(err)
		}
	}
}
