// Package iotlocal is a local stand-in for the AWS IoT credentials
// provider, for tests and demos. It serves
// GET /role-aliases/<alias>/credentials over TLS, requires a client
// certificate signed by its CA, checks the x-amzn-iot-thingname header
// against the certificate, and answers like the real service: the
// credentials JSON, or {"message":...} with 400/403/404.
//
// Tests can count requests, slow answers down, inject failures, stop and
// restart the server, and choose where credentials come from. To test
// credential rotation end to end against the local KVS endpoint, let it
// issue the credentials, so that signatures made with them verify:
//
//	pki, _ := testpki.Generate(t.TempDir(), "cam-0001")
//	srv, _ := iotlocal.Start(iotlocal.Config{
//		TLS:      pki.ServerTLS(),
//		Lifetime: 5 * time.Second,
//		Issue:    iotlocal.IssueFrom(kvs.IssueCredentials), // kvs is the *kvslocal.Server
//	})
//	defer srv.Close()
//	prov, _ := credentials.New(ctx, credentials.Config{
//		Source: "iot", Endpoint: srv.Endpoint(), RoleAlias: iotlocal.DefaultRoleAlias,
//		ThingName: "cam-0001", Cert: pki.Client.Cert, Key: pki.Client.Key, CA: pki.CAFile,
//	})
//	go prov.Run(ctx) // background refresh; the sender calls prov.Invalidate() on 403
//
// srv.Served() then counts the fetches, and kvs.ExpireCredentials() makes
// the issued ones expire early.
package iotlocal

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// DefaultRoleAlias is the alias served when Config.RoleAliases is empty.
const DefaultRoleAlias = "kvscamd"

// DefaultLifetime is the credentials' lifetime when Config.Lifetime is 0,
// the service's default.
const DefaultLifetime = time.Hour

// Messages the real service sends (as far as they are documented).
const (
	MsgInvalidThing   = "Invalid thing name passed"
	MsgNoAlias        = "Role alias does not exist"
	MsgCannotAssume   = "Unable to assume the role, or the role to assume does not exist"
	MsgDurationTooBig = "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role"
	MsgAccessDenied   = "Access Denied"
	MsgCertInvalid    = "Certificate is invalid on this endpoint"
)

// Credentials are what the server hands out. They print redacted.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// String shows the access key ID and expiry only.
func (c Credentials) String() string {
	return fmt.Sprintf("{AccessKeyID:%s Expiration:%s secrets:[redacted]}", c.AccessKeyID, c.Expiration.UTC().Format(time.RFC3339))
}

// Format applies String to every verb.
func (c Credentials) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// Request describes one credentials request that passed authentication.
type Request struct {
	RoleAlias string
	Thing     string // x-amzn-iot-thingname, may be empty
	CertCN    string // common name of the client certificate
	SNI       string // server name the client sent in its TLS hello
	Lifetime  time.Duration
}

// IssueFunc produces credentials for a request.
type IssueFunc func(ctx context.Context, req Request) (Credentials, error)

// Config configures a Server.
type Config struct {
	// TLS must present the server certificate and set ClientAuth to
	// tls.RequireAndVerifyClientCert with ClientCAs (testpki.Set.ServerTLS
	// does).
	TLS *tls.Config
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// RoleAliases known to the server; default {DefaultRoleAlias}.
	RoleAliases []string
	// Things maps a thing name to the certificate common name it is
	// attached to. Nil: the thing name must equal the common name.
	Things map[string]string
	// Lifetime of issued credentials; default DefaultLifetime.
	Lifetime time.Duration
	// Issue creates credentials; default: random ones.
	Issue IssueFunc
}

// fault is an injected failure.
type fault struct {
	status  int
	message string
	left    int // < 0: forever
}

// Server is a running stand-in. All methods are safe for concurrent use.
type Server struct {
	cfg  Config
	addr string

	requests atomic.Int64 // requests that reached the handler
	served   atomic.Int64 // credentials handed out
	delay    atomic.Int64 // time.Duration
	lifetime atomic.Int64 // time.Duration

	mu     sync.Mutex
	srv    *http.Server
	issued []Credentials
	fault  *fault
	done   chan struct{} // closed by Stop: releases delayed handlers
}

// Start listens and serves in the background until Stop or Close.
func Start(cfg Config) (*Server, error) {
	if cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("iotlocal: Config.TLS must require and verify client certificates")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if len(cfg.RoleAliases) == 0 {
		cfg.RoleAliases = []string{DefaultRoleAlias}
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Issue == nil {
		cfg.Issue = RandomCredentials
	}
	s := &Server{cfg: cfg}
	s.lifetime.Store(int64(cfg.Lifetime))
	if err := s.listen(cfg.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("iotlocal: listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		TLSConfig:         s.cfg.TLS.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake failures are what many tests provoke; they are not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.srv = srv
	s.done = make(chan struct{})
	s.mu.Unlock()
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return nil
}

// Endpoint is the host:port to put into credentials.Config.Endpoint.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Requests counts requests that completed the TLS handshake and reached
// the handler, whatever their answer.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Served counts credentials handed out.
func (s *Server) Served() int64 { return s.served.Load() }

// Issued returns every set of credentials handed out, oldest first.
func (s *Server) Issued() []Credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Credentials(nil), s.issued...)
}

// SetLifetime changes the lifetime of credentials issued from now on.
func (s *Server) SetLifetime(d time.Duration) { s.lifetime.Store(int64(d)) }

// SetDelay makes every answer wait d (0 = answer at once). A waiting
// request ends early when the client goes away or the server stops.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Fail makes the next n requests (n < 0: all, n == 0: none) answer with
// status and {"message": message}, after authentication.
func (s *Server) Fail(status int, message string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n == 0 {
		s.fault = nil
		return
	}
	s.fault = &fault{status: status, message: message, left: n}
}

// Stop closes the listener and every connection; afterwards connections
// are refused. Restart serves again on the same address.
func (s *Server) Stop() error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	close(done)
	return srv.Close()
}

// Restart listens again on the address the server had.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.srv != nil
	addr := s.addr
	s.mu.Unlock()
	if running {
		return nil
	}
	return s.listen(addr)
}

// Close stops the server for good.
func (s *Server) Close() error { return s.Stop() }

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if d := time.Duration(s.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler) // no answer at all, not an empty 200
		case <-done:
			panic(http.ErrAbortHandler)
		}
	}
	alias, ok := parsePath(r.URL.Path)
	if r.Method != http.MethodGet || !ok {
		writeError(w, http.StatusNotFound, "ResourceNotFoundException", "No such resource: "+r.Method+" "+r.URL.Path)
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, http.StatusForbidden, "AccessDeniedException", MsgCertInvalid)
		return
	}
	cn := r.TLS.PeerCertificates[0].Subject.CommonName
	if f := s.takeFault(); f != nil {
		writeError(w, f.status, errorType(f.status), f.message)
		return
	}
	thing := r.Header.Get("x-amzn-iot-thingname")
	if thing != "" {
		want := thing
		if s.cfg.Things != nil {
			want = s.cfg.Things[thing]
		}
		if want == "" || want != cn {
			writeError(w, http.StatusForbidden, "AccessDeniedException", MsgInvalidThing)
			return
		}
	}
	if !s.knowsAlias(alias) {
		writeError(w, http.StatusNotFound, "ResourceNotFoundException", MsgNoAlias)
		return
	}
	req := Request{RoleAlias: alias, Thing: thing, CertCN: cn, SNI: r.TLS.ServerName, Lifetime: time.Duration(s.lifetime.Load())}
	creds, err := s.cfg.Issue(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalException", "issuing credentials failed")
		return
	}
	s.mu.Lock()
	s.issued = append(s.issued, creds)
	s.mu.Unlock()
	s.served.Add(1)
	var body struct {
		Credentials struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      string `json:"expiration"`
		} `json:"credentials"`
	}
	body.Credentials.AccessKeyID = creds.AccessKeyID
	body.Credentials.SecretAccessKey = creds.SecretAccessKey
	body.Credentials.SessionToken = creds.SessionToken
	body.Credentials.Expiration = creds.Expiration.UTC().Format(time.RFC3339)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&body)
}

func (s *Server) takeFault() *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	if f == nil {
		return nil
	}
	if f.left > 0 {
		f.left--
		if f.left == 0 {
			s.fault = nil
		}
	}
	return &fault{status: f.status, message: f.message}
}

func (s *Server) knowsAlias(alias string) bool {
	for _, a := range s.cfg.RoleAliases {
		if a == alias {
			return true
		}
	}
	return false
}

// parsePath accepts /role-aliases/<alias>/credentials.
func parsePath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/role-aliases/")
	if !ok {
		return "", false
	}
	alias, ok := strings.CutSuffix(rest, "/credentials")
	if !ok || alias == "" || strings.Contains(alias, "/") {
		return "", false
	}
	return alias, true
}

func errorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "InvalidRequestException"
	case http.StatusForbidden:
		return "AccessDeniedException"
	case http.StatusNotFound:
		return "ResourceNotFoundException"
	case http.StatusTooManyRequests:
		return "ThrottlingException"
	}
	return "InternalException"
}

func writeError(w http.ResponseWriter, status int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-ErrorType", errType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// IssueFrom adapts a function that mints credentials with a lifetime,
// such as the local KVS endpoint's IssueCredentials, to an IssueFunc.
func IssueFrom(issue func(lifetime time.Duration) aws.Credentials) IssueFunc {
	return func(_ context.Context, req Request) (Credentials, error) {
		c := issue(req.Lifetime)
		return Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
			SessionToken: c.SessionToken, Expiration: c.Expires}, nil
	}
}

// RandomCredentials is the default IssueFunc: random keys in the shape of
// real temporary credentials, expiring after req.Lifetime.
func RandomCredentials(_ context.Context, req Request) (Credentials, error) {
	const upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return Credentials{}, err
	}
	for i := range id {
		id[i] = upperAlnum[int(id[i])%len(upperAlnum)]
	}
	secret := make([]byte, 30)
	token := make([]byte, 96)
	if _, err := rand.Read(secret); err != nil {
		return Credentials{}, err
	}
	if _, err := rand.Read(token); err != nil {
		return Credentials{}, err
	}
	return Credentials{
		AccessKeyID:     "ASIA" + string(id),
		SecretAccessKey: base64.StdEncoding.EncodeToString(secret),
		SessionToken:    base64.StdEncoding.EncodeToString(token),
		// Whole seconds like the real service, rounded up so that short
		// test lifetimes are not cut.
		Expiration: time.Now().Add(req.Lifetime + time.Second - 1).Truncate(time.Second),
	}, nil
}
