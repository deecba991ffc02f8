// Package testpki creates throw-away certificate authorities and
// certificates for tests: a CA, server certificates for 127.0.0.1 and
// localhost, and device (client) certificates, including broken ones
// (expired, not yet valid, signed by another CA). Keys are ECDSA P-256 by
// default because they are fast to generate; RSA is available because AWS
// IoT hands out RSA device certificates.
//
// Files are written as PEM; private keys get mode 0600 so that they pass
// the loader's permission check.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"time"

	"github.com/kvscamd/kvscamd/internal/atomicfile"
)

// DefaultLifetime is how long generated certificates are valid from now.
const DefaultLifetime = 24 * time.Hour

// backdate makes fresh certificates valid slightly in the past so that
// small clock differences between generator and verifier do not matter.
const backdate = time.Hour

// KeyType selects the key algorithm.
type KeyType int

const (
	ECDSA KeyType = iota // P-256
	RSA                  // 2048 bit
)

// CA is a certificate authority that can issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA creates a self-signed root CA named cn.
func NewCA(cn string) (*CA, error) {
	key, err := newKey(ECDSA)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"kvscamd test"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(10 * DefaultLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testpki: create CA %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM returns the CA certificate as PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCert writes the CA certificate as PEM to path (mode 0644).
func (ca *CA) WriteCert(path string) error {
	if err := atomicfile.WriteFile(path, ca.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("testpki: write CA %s: %w", path, err)
	}
	return nil
}

// LeafOptions describes a certificate to issue.
type LeafOptions struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Server     bool // ExtKeyUsageServerAuth
	Client     bool // ExtKeyUsageClientAuth
	// NotBefore and NotAfter default to one hour ago and DefaultLifetime
	// from now.
	NotBefore, NotAfter time.Time
	KeyType             KeyType
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	CA   *CA
}

// Issue signs a new certificate.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	key, err := newKey(o.KeyType)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-backdate)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(DefaultLifetime)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.CommonName},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if o.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if o.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: issue %s: %w", o.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, CA: ca}, nil
}

// IssueServer issues a server certificate for 127.0.0.1, ::1 and
// localhost plus any extra DNS names.
func (ca *CA) IssueServer(extraDNS ...string) (*Leaf, error) {
	return ca.Issue(LeafOptions{
		CommonName: "localhost",
		DNSNames:   append([]string{"localhost"}, extraDNS...),
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Server:     true,
	})
}

// IssueClient issues a device certificate whose common name is thing.
func (ca *CA) IssueClient(thing string) (*Leaf, error) {
	return ca.Issue(LeafOptions{CommonName: thing, Client: true})
}

// CertPEM returns the certificate as PEM.
func (l *Leaf) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw})
}

// KeyPEM returns the private key as PKCS #8 PEM.
func (l *Leaf) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		panic(fmt.Sprintf("testpki: marshal key: %v", err)) // keys come from newKey: cannot happen
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TLSCertificate returns the certificate and key for a tls.Config.
func (l *Leaf) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
}

// Files are the paths a Leaf was written to.
type Files struct {
	Cert string
	Key  string
	Leaf *Leaf
}

// Write stores the certificate as dir/name.pem.crt (0644) and the key as
// dir/name.pem.key (0600), the naming AWS IoT uses.
func (l *Leaf) Write(dir, name string) (Files, error) {
	f := Files{
		Cert: filepath.Join(dir, name+".pem.crt"),
		Key:  filepath.Join(dir, name+".pem.key"),
		Leaf: l,
	}
	// Atomic, so that a provider reloading the files while a test
	// rotates them never reads half a certificate; the key's mode is
	// exact, whatever mode an older file had.
	if err := atomicfile.WriteFile(f.Cert, l.CertPEM(), 0o644); err != nil {
		return Files{}, fmt.Errorf("testpki: write %s: %w", f.Cert, err)
	}
	if err := atomicfile.WriteFile(f.Key, l.KeyPEM(), 0o600); err != nil {
		return Files{}, fmt.Errorf("testpki: write %s: %w", f.Key, err)
	}
	return f, nil
}

// Set is a ready-made collection of files for mutual-TLS tests.
type Set struct {
	Dir         string
	CA          *CA
	CAFile      string // ca.pem: trusts Server and signs Client
	OtherCA     *CA
	OtherCAFile string // other-ca.pem: a CA nobody uses for the server

	Server        Files // 127.0.0.1, ::1, localhost; signed by CA
	Client        Files // CN = Thing, valid, signed by CA
	ExpiredClient Files // CN = Thing, expired a day ago
	FutureClient  Files // CN = Thing, valid only from tomorrow
	OtherClient   Files // CN = Thing, signed by OtherCA
	Thing         string
}

// Generate creates a Set in dir for the thing name thing.
func Generate(dir, thing string) (*Set, error) {
	s := &Set{Dir: dir, Thing: thing}
	var err error
	if s.CA, err = NewCA("kvscamd test CA"); err != nil {
		return nil, err
	}
	if s.OtherCA, err = NewCA("unrelated test CA"); err != nil {
		return nil, err
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	s.OtherCAFile = filepath.Join(dir, "other-ca.pem")
	if err := s.CA.WriteCert(s.CAFile); err != nil {
		return nil, err
	}
	if err := s.OtherCA.WriteCert(s.OtherCAFile); err != nil {
		return nil, err
	}
	now := time.Now()
	jobs := []struct {
		dst  *Files
		name string
		ca   *CA
		opts LeafOptions
	}{
		{&s.Server, "server", s.CA, LeafOptions{CommonName: "localhost", DNSNames: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true}},
		{&s.Client, "device", s.CA, LeafOptions{CommonName: thing, Client: true}},
		{&s.ExpiredClient, "expired", s.CA, LeafOptions{CommonName: thing, Client: true,
			NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}},
		{&s.FutureClient, "future", s.CA, LeafOptions{CommonName: thing, Client: true,
			NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)}},
		{&s.OtherClient, "other", s.OtherCA, LeafOptions{CommonName: thing, Client: true}},
	}
	for _, j := range jobs {
		leaf, err := j.ca.Issue(j.opts)
		if err != nil {
			return nil, err
		}
		if *j.dst, err = leaf.Write(dir, j.name); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ServerTLS returns a server configuration presenting s.Server and
// requiring client certificates signed by s.CA.
func (s *Set) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{s.Server.Leaf.TLSCertificate()},
		ClientCAs:    s.CA.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case RSA:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(fmt.Sprintf("testpki: random serial: %v", err)) // crypto/rand does not fail on Linux
	}
	return n
}

// SignCSR issues a client certificate for the key in a CSR, with common
// name cn and the given lifetime (DefaultLifetime if zero), as a cloud
// service that signs device CSRs does.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, cn string, lifetime time.Duration) (*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("testpki: CSR signature: %w", err)
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if _, isRSA := csr.PublicKey.(*rsa.PublicKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: sign CSR for %s: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}
