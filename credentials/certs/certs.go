// Package certs loads the PEM files a device uses for mutual TLS (its
// certificate, its private key and the CA bundle it trusts) and builds a
// client tls.Config from them. The IoT credentials provider and the MQTT
// client share it.
//
// Every error names the file, says what was found in it and how to fix it,
// because the person reading it is an operator on a device, not a
// developer. Errors never contain key material.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// MaxFileSize bounds how much of a PEM file is read. Real certificate
// chains and CA bundles are a few kilobytes; the system bundle is ~200 KiB.
const MaxFileSize = 4 << 20

// KeyModeMask are the permission bits a private key file must not have:
// anything for group or others.
const KeyModeMask fs.FileMode = 0o077

// dateLayout is how validity dates appear in messages.
const dateLayout = time.RFC3339

// Files names the PEM files of a mutual-TLS client.
type Files struct {
	Cert string // device certificate, optionally followed by intermediates
	Key  string // the certificate's private key, unencrypted
	CA   string // CA bundle that signs the server; empty means the system store
}

// ClientTLSConfig loads f and returns a client configuration for mutual TLS
// with serverName as SNI and verified host name, TLS 1.2 or newer. now is
// the instant the certificate's validity is checked against.
func ClientTLSConfig(f Files, serverName string, now time.Time) (*tls.Config, error) {
	pair, err := LoadKeyPair(f.Cert, f.Key, now)
	if err != nil {
		return nil, err
	}
	pool, err := LoadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// Always present the device certificate. With only Certificates
		// set, crypto/tls sends none when the server's list of acceptable
		// CAs does not name the issuer, and the server's answer ("certificate
		// required") then hides what is wrong with the certificate.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &pair, nil
		},
		RootCAs:    pool,
		ServerName: serverName,
	}, nil
}

// LoadKeyPair reads a PEM certificate (chain) and its PEM private key,
// checks the key's file mode, that the key belongs to the certificate and
// that the certificate is valid at now.
func LoadKeyPair(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	chain, err := LoadCertificates(certFile, "certificate")
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := LoadPrivateKey(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := chain[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return tls.Certificate{}, fmt.Errorf("certs: private key %s does not belong to certificate %s (subject %q): "+
			"install the key that was created together with this certificate", keyFile, certFile, leaf.Subject.String())
	}
	if err := CheckValidity(leaf, certFile, now); err != nil {
		return tls.Certificate{}, err
	}
	out := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}

// CheckValidity reports whether cert (read from file) is valid at now,
// giving both dates and the clock's reading when it is not.
func CheckValidity(cert *x509.Certificate, file string, now time.Time) error {
	span := fmt.Sprintf("valid from %s to %s", cert.NotBefore.UTC().Format(dateLayout), cert.NotAfter.UTC().Format(dateLayout))
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("certs: certificate %s expired on %s (%s, the system clock says %s): "+
			"issue a new certificate for this device and install it, or correct the system clock if it is wrong",
			file, cert.NotAfter.UTC().Format(dateLayout), span, now.UTC().Format(dateLayout))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("certs: certificate %s is not valid yet (%s, the system clock says %s): "+
			"if the clock is wrong (no RTC, NTP not yet synchronised) fix the clock, otherwise install a certificate that is already valid",
			file, span, now.UTC().Format(dateLayout))
	}
	return nil
}

// LoadCAPool reads a PEM bundle of CA certificates. An empty file name
// selects the system's trust store.
func LoadCAPool(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("certs: system CA store: %w (set a CA file explicitly)", err)
		}
		return pool, nil
	}
	certs, err := LoadCertificates(caFile, "CA file")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// LoadCertificates reads every certificate of a PEM file, in order. what
// ("certificate", "CA file") names the file's role in messages.
func LoadCertificates(file, what string) ([]*x509.Certificate, error) {
	data, err := readFile(file, what)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	var others []string
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			others = append(others, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: %s %s: certificate #%d cannot be parsed: %v", what, file, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if len(others) > 0 {
		found := describeBlocks(others)
		if hasKeyBlock(others) {
			return nil, fmt.Errorf("certs: %s %s contains %s, not a certificate: the certificate and key settings look swapped", what, file, found)
		}
		return nil, fmt.Errorf("certs: %s %s contains %s but no certificate (expected -----BEGIN CERTIFICATE-----)", what, file, found)
	}
	return nil, fmt.Errorf("certs: %s %s contains no certificates: %s", what, file, notPEM(data, file, "x509"))
}

// LoadPrivateKey reads an unencrypted PEM private key (PKCS #8, PKCS #1 or
// SEC 1) and refuses it if anyone but its owner can read the file.
func LoadPrivateKey(file string) (crypto.Signer, error) {
	data, err := readFile(file, "private key")
	if err != nil {
		return nil, err
	}
	var others []string
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			if err := CheckKeyMode(file); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("certs: private key %s is encrypted with a passphrase; store it unencrypted "+
				"(openssl pkey -in %s -out key.pem) and protect it with chmod 600", file, file)
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			others = append(others, block.Type)
			continue
		}
		// The mode matters only once the file really holds a key; a swapped
		// certificate should not first earn a chmod hint.
		if err := CheckKeyMode(file); err != nil {
			return nil, err
		}
		key, err := parseKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: private key %s (PEM block %q) cannot be parsed: %v", file, block.Type, err)
		}
		return key, nil
	}
	if len(others) > 0 {
		found := describeBlocks(others)
		switch {
		case contains(others, "CERTIFICATE"):
			return nil, fmt.Errorf("certs: private key %s contains %s, not a private key: the certificate and key settings look swapped", file, found)
		case contains(others, "PUBLIC KEY") || contains(others, "RSA PUBLIC KEY"):
			return nil, fmt.Errorf("certs: private key %s contains %s: that is the public half; use the private key file (AWS IoT names it *-private.pem.key)", file, found)
		}
		return nil, fmt.Errorf("certs: private key %s contains %s but no private key", file, found)
	}
	return nil, fmt.Errorf("certs: private key %s contains no private key: %s", file, notPEM(data, file, "pkey"))
}

// CheckKeyMode refuses a private key file that group or others may access,
// and gives the chmod that fixes it.
func CheckKeyMode(file string) error {
	st, err := os.Stat(file)
	if err != nil {
		return fileError(file, "private key", err)
	}
	if st.IsDir() {
		return fmt.Errorf("certs: private key %s is a directory, not a file", file)
	}
	if perm := st.Mode().Perm(); perm&KeyModeMask != 0 {
		return fmt.Errorf("certs: private key %s is accessible by group or others (mode %04o); restrict it: chmod 600 %s", file, perm, file)
	}
	return nil
}

func readFile(file, what string) ([]byte, error) {
	if file == "" {
		return nil, fmt.Errorf("certs: no %s file configured", what)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fileError(file, what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fileError(file, what, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("certs: %s %s is a directory, not a file", what, file)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fileError(file, what, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("certs: %s %s is larger than %d bytes: not a PEM file", what, file, MaxFileSize)
	}
	return data, nil
}

func fileError(file, what string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("certs: %s %s does not exist: check the path in the configuration", what, file)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("certs: %s %s cannot be read by this user (uid %d): give the service user read access (owner or group)", what, file, os.Getuid())
	}
	return fmt.Errorf("certs: %s %s: %w", what, file, err)
}

// notPEM explains data that holds no PEM block at all.
func notPEM(data []byte, file, opensslCmd string) string {
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return "the file is empty"
	case trimmed[0] == 0x30: // ASN.1 SEQUENCE: binary DER
		return fmt.Sprintf("the file is binary DER, not PEM; convert it: openssl %s -inform der -in %s -out %s.pem", opensslCmd, file, file)
	}
	return "no PEM data found (expected lines like -----BEGIN ...-----)"
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return asSigner(k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS #8, PKCS #1 or SEC 1 private key")
}

func asSigner(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func describeBlocks(types []string) string {
	quoted := make([]string, len(types))
	for i, t := range types {
		quoted[i] = fmt.Sprintf("a %q PEM block", t)
	}
	return strings.Join(quoted, " and ")
}

func hasKeyBlock(types []string) bool {
	for _, t := range types {
		if strings.HasSuffix(t, "PRIVATE KEY") {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
