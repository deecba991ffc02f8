// Package provisiontest plays AWS IoT's fleet provisioning service on a
// mosquittotest broker: it signs device CSRs with the broker's CA and
// registers things, answering on the accepted and rejected topics with
// the documented payloads. Tests script refusals and silences to drive a
// device through failures and restarts.
package provisiontest

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/kvscamd/kvscamd/internal/mosquittotest"
)

const (
	csrTopic     = "$aws/certificates/create-from-csr/json"
	provisionSub = "$aws/provisioning-templates/+/provision/json"
	waitFor      = 20 * time.Second
)

// Rejection is what the service sends on a rejected topic.
type Rejection struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// Answer scripts the reply to one request: Reject it, or stay Silent (as
// a connection cut before the answer would look to the device).
type Answer struct {
	Reject *Rejection
	Silent bool
}

// Registration is one thing the service registered.
type Registration struct {
	ThingName     string
	CertificateID string
	Parameters    map[string]string
}

// Service is a running stand-in.
type Service struct {
	t        *testing.T
	c        paho.Client
	template string
	// ThingPrefix + the SerialNumber parameter is the thing name; the
	// certificate's common name is the same, so that the broker's ACL and
	// the IoT credentials stand-in accept the device under it.
	ThingPrefix string
	// Lifetime of the certificates issued; zero means the testpki default.
	Lifetime time.Duration
	// DeviceConfiguration is returned by every registration.
	DeviceConfiguration map[string]string

	mu          sync.Mutex
	cond        *sync.Cond
	csrs        int
	registers   int
	onCSR       func(n int) Answer
	onRegister  func(n int) Answer
	tokens      map[string]string // ownership token → certificate id
	certs       map[string]string // certificate id → common name
	registered  []Registration
	broker      *mosquittotest.Broker
	errs        []string
	csrSubjects []string
}

// Start connects the service to b as mosquittotest.Cloud for template.
func Start(t *testing.T, b *mosquittotest.Broker, template string) *Service {
	t.Helper()
	s := &Service{t: t, template: template, ThingPrefix: "cam-", broker: b,
		tokens: map[string]string{}, certs: map[string]string{}}
	s.cond = sync.NewCond(&s.mu)
	o := paho.NewClientOptions().AddBroker("tls://" + b.Addr()).SetClientID("provisioning-service").
		SetTLSConfig(b.ClientTLS(mosquittotest.Cloud)).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).SetCleanSession(true).
		SetOrderMatters(false)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.SubscribeMultiple(map[string]byte{csrTopic: 1, provisionSub: 1}, func(c paho.Client, m paho.Message) {
			s.handle(c, m.Topic(), append([]byte(nil), m.Payload()...))
		}).Wait()
	})
	s.c = paho.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("provisioning service: connect: %v", tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(0) })
	return s
}

// OnCSR and OnRegister script the answers to the n-th request (from 1).
func (s *Service) OnCSR(f func(n int) Answer) {
	s.mu.Lock()
	s.onCSR = f
	s.mu.Unlock()
}

// OnRegister: see OnCSR.
func (s *Service) OnRegister(f func(n int) Answer) {
	s.mu.Lock()
	s.onRegister = f
	s.mu.Unlock()
}

// Counts returns how many CSR and RegisterThing requests arrived.
func (s *Service) Counts() (csrs, registers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.csrs, s.registers
}

// Registered returns the things registered so far.
func (s *Service) Registered() []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Registration(nil), s.registered...)
}

// Errors returns what the service found wrong in the requests it got.
func (s *Service) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

// WaitRequests waits until at least csrs CSR and registers RegisterThing
// requests arrived.
func (s *Service) WaitRequests(csrs, registers int) {
	s.t.Helper()
	deadline := time.Now().Add(waitFor)
	timer := time.AfterFunc(waitFor, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.csrs < csrs || s.registers < registers {
		if time.Now().After(deadline) {
			s.t.Fatalf("provisioning service: got %d CSRs and %d registrations after %s, want %d and %d", s.csrs, s.registers, waitFor, csrs, registers)
		}
		s.cond.Wait()
	}
}

func (s *Service) handle(c paho.Client, topic string, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.cond.Broadcast()
	switch {
	case topic == csrTopic:
		s.csrs++
		ans := Answer{}
		if s.onCSR != nil {
			ans = s.onCSR(s.csrs)
		}
		s.answer(c, topic, ans, func() (any, *Rejection) { return s.signCSR(payload) })
	case strings.HasSuffix(topic, "/provision/json"):
		s.registers++
		ans := Answer{}
		if s.onRegister != nil {
			ans = s.onRegister(s.registers)
		}
		tmpl := strings.TrimSuffix(strings.TrimPrefix(topic, "$aws/provisioning-templates/"), "/provision/json")
		s.answer(c, topic, ans, func() (any, *Rejection) { return s.register(tmpl, payload) })
	}
}

// answer publishes on topic/accepted or topic/rejected; it runs on paho's
// goroutine and so publishes without waiting for the broker.
func (s *Service) answer(c paho.Client, topic string, ans Answer, do func() (any, *Rejection)) {
	if ans.Silent {
		return
	}
	var (
		body any
		rej  = ans.Reject
	)
	if rej == nil {
		body, rej = do()
	}
	suffix := "/accepted"
	if rej != nil {
		suffix, body = "/rejected", rej
	}
	data, _ := json.Marshal(body)
	c.Publish(topic+suffix, 1, false, data)
}

func (s *Service) signCSR(payload []byte) (any, *Rejection) {
	var req struct {
		CSR string `json:"certificateSigningRequest"`
	}
	bad := func(msg string) (any, *Rejection) {
		s.errs = append(s.errs, msg)
		return nil, &Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: msg}
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return bad("payload is not JSON: " + err.Error())
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return bad("certificateSigningRequest is not a PEM CSR")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return bad("CSR: " + err.Error())
	}
	serial := csr.Subject.CommonName
	s.csrSubjects = append(s.csrSubjects, serial)
	cert, err := s.broker.CA.SignCSR(csr, s.ThingPrefix+serial, s.Lifetime)
	if err != nil {
		return bad(err.Error())
	}
	id := randomHex(32)
	tok := randomHex(48)
	s.tokens[tok] = id
	s.certs[id] = cert.Subject.CommonName
	return map[string]string{
		"certificateOwnershipToken": tok,
		"certificateId":             id,
		"certificatePem":            string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
	}, nil
}

func (s *Service) register(tmpl string, payload []byte) (any, *Rejection) {
	var req struct {
		Token      string            `json:"certificateOwnershipToken"`
		Parameters map[string]string `json:"parameters"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		s.errs = append(s.errs, "RegisterThing payload is not JSON")
		return nil, &Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: err.Error()}
	}
	if tmpl != s.template {
		return nil, &Rejection{StatusCode: 404, ErrorCode: "ResourceNotFoundException", ErrorMessage: fmt.Sprintf("template %s not found", tmpl)}
	}
	id, ok := s.tokens[req.Token]
	if !ok {
		s.errs = append(s.errs, "RegisterThing with an unknown or used ownership token")
		return nil, &Rejection{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "the ownership token is not valid"}
	}
	serial := req.Parameters["SerialNumber"]
	if serial == "" {
		return nil, &Rejection{StatusCode: 400, ErrorCode: "InvalidParameters", ErrorMessage: "SerialNumber is required"}
	}
	thing := s.ThingPrefix + serial
	if s.certs[id] != thing {
		s.errs = append(s.errs, fmt.Sprintf("certificate %s was issued for %s, registered as %s", id, s.certs[id], thing))
	}
	delete(s.tokens, req.Token)
	s.registered = append(s.registered, Registration{ThingName: thing, CertificateID: id, Parameters: req.Parameters})
	dc := s.DeviceConfiguration
	if dc == nil {
		dc = map[string]string{}
	}
	return map[string]any{"thingName": thing, "deviceConfiguration": dc}, nil
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
