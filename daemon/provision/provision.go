// Package provision gives a camera its own AWS IoT identity by fleet
// provisioning by claim, and renews it before it expires.
//
// Every camera of a fleet carries the same claim certificate. On first
// boot the camera generates its own private key (it never leaves the
// device), connects with the claim certificate, has AWS IoT sign a CSR
// ($aws/certificates/create-from-csr/json) and registers the certificate
// with a provisioning template ($aws/provisioning-templates/<t>/provision/json),
// which names the thing. The result is committed to an identity.Store in
// one step; from then on the daemon connects with the device certificate
// and that thing name. The claim certificate serves nothing else.
//
// Each step survives a power cut: the key is stored before the CSR is
// sent, and the issued certificate with its ownership token before
// RegisterThing, so a restart within the token's hour registers the same
// certificate instead of asking for another.
package provision

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
	"github.com/kvscamd/kvscamd/credentials/identity"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/clock"
)

// Topics of AWS IoT's fleet provisioning MQTT API, JSON flavour.
const (
	TopicCreateFromCSR = "$aws/certificates/create-from-csr/json"
	topicProvisionFmt  = "$aws/provisioning-templates/%s/provision/json"
)

// ProvisionTopic is the RegisterThing topic of template.
func ProvisionTopic(template string) string { return fmt.Sprintf(topicProvisionFmt, template) }

// Topics lists every topic this package publishes to, and the
// accepted/rejected replies it subscribes to, for template; the IoT policy
// must allow exactly these.
func Topics(template string) (publish, subscribe []string) {
	prov := ProvisionTopic(template)
	return []string{TopicCreateFromCSR, prov},
		[]string{TopicCreateFromCSR + "/accepted", TopicCreateFromCSR + "/rejected", prov + "/accepted", prov + "/rejected"}
}

// Limits and timings.
const (
	// stepTimeout bounds one request/response round trip.
	stepTimeout = 30 * time.Second
	// tokenMargin: an ownership token with less than this left is not
	// presented, a new certificate is asked for instead.
	tokenMargin = 5 * time.Minute
	// keepAlive for the short provisioning session.
	keepAlive = 60 * time.Second
	// MaxSerialLen bounds the serial number parameter.
	MaxSerialLen = 128
	// retryMin and retryMax space out failed provisioning attempts; the
	// jitter keeps a fleet booting together from arriving together.
	retryMin = 5 * time.Second
	retryMax = 10 * time.Minute
)

// Rejected is an answer on a …/rejected topic.
type Rejected struct {
	Step         string `json:"-"`
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

func (r *Rejected) Error() string {
	return fmt.Sprintf("provision: %s rejected: %d %s: %s", r.Step, r.StatusCode, r.ErrorCode, r.ErrorMessage)
}

// Options configure a provisioning run.
type Options struct {
	// Config is the [provisioning] table, defaults applied.
	Config config.Provisioning
	// Serial returns the SerialNumber parameter; nil uses SerialNumber
	// from the table, then what the hardware says (see DeviceSerial).
	Serial func() (string, error)
	// Connect opens the MQTT session; nil uses mqtt.Connect.
	Connect func(context.Context, mqtt.ConnOptions) (*mqtt.Conn, error)
	Logger  *slog.Logger
	Clock   clock.Clock
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Connect == nil {
		o.Connect = mqtt.Connect
	}
	if o.Serial == nil {
		o.Serial = func() (string, error) {
			if o.Config.SerialNumber != "" {
				return o.Config.SerialNumber, nil
			}
			return DeviceSerial()
		}
	}
}

// Identity is what a connection presents: a certificate and key pair.
type Identity struct {
	Cert, Key string
	// ClientID for the MQTT session.
	ClientID string
}

// Run provisions until it succeeds or ctx ends, retrying with back-off
// after every failure. status, if set, hears one line per attempt for
// the service manager's status. It returns at once if the store already
// holds an identity.
func Run(ctx context.Context, o Options, status func(string)) (*identity.Identity, error) {
	o.defaults()
	if status == nil {
		status = func(string) {}
	}
	st := o.Config.Store()
	if id, err := st.Load(); err == nil {
		return id, nil
	} else if !errors.Is(err, identity.ErrNotProvisioned) {
		return nil, err
	}
	b := backoff.Backoff{Min: retryMin, Max: retryMax, Jitter: backoff.Full}
	for attempt := 1; ; attempt++ {
		status(fmt.Sprintf("provisioning with template %s (attempt %d)", o.Config.Template, attempt))
		id, err := Once(ctx, o, Identity{Cert: o.Config.ClaimCert, Key: o.Config.ClaimKey})
		if err == nil {
			status("provisioned as " + id.ThingName)
			o.Logger.Info("provision: device provisioned", "thing", id.ThingName, "certificate", id.CertificateID,
				"template", id.Template, "not_after", id.NotAfter)
			return id, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := b.Next()
		status(fmt.Sprintf("provisioning failed, retrying in %s: %v", wait.Round(time.Second), err))
		o.Logger.Warn("provision: attempt failed", "template", o.Config.Template, "attempt", attempt, "retry_in", wait, "err", err)
		if clock.Sleep(ctx, o.Clock, wait) != nil {
			return nil, ctx.Err()
		}
	}
}

// Once makes one provisioning attempt connected as who (the claim
// certificate at first boot, the device's own for a renewal) and commits
// the result.
func Once(ctx context.Context, o Options, who Identity) (*identity.Identity, error) {
	o.defaults()
	cfg := o.Config
	st := cfg.Store()
	keyPEM, err := st.PendingKey(func() ([]byte, error) { return NewKey(cfg.KeyType) })
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("provision: the pending key in %s: %w", cfg.Dir, err)
	}
	serial, err := o.Serial()
	if err != nil {
		return nil, err
	}
	clientID := who.ClientID
	if clientID == "" {
		clientID = serial
	}
	conn, err := o.Connect(ctx, mqtt.ConnOptions{
		Endpoint:  cfg.Endpoint,
		ClientID:  clientID,
		KeepAlive: keepAlive,
		TLS: func() (*tls.Config, error) {
			return certs.ClientTLSConfig(certs.Files{Cert: who.Cert, Key: who.Key, CA: cfg.CA}, "", o.Clock.Now())
		},
		Logger: o.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("provision: connect to %s as %s: %w", cfg.Endpoint, clientID, err)
	}
	// A clean disconnect: the session with this certificate ends here,
	// and the daemon reconnects with the device certificate.
	defer conn.Close()

	issued, ok, err := st.LoadIssued()
	if err != nil {
		return nil, err
	}
	if ok && !issued.Usable(o.Clock.Now(), tokenMargin) {
		o.Logger.Info("provision: the certificate issued earlier can no longer be registered, asking for a new one",
			"certificate", issued.CertificateID, "obtained_at", issued.ObtainedAt)
		if err := st.DropIssued(); err != nil {
			return nil, err
		}
		ok = false
	}
	if ok {
		o.Logger.Info("provision: resuming with the certificate issued earlier", "certificate", issued.CertificateID)
	} else {
		issued, err = createFromCSR(ctx, conn, key, serial, o.Clock)
		if err != nil {
			return nil, err
		}
		if err := st.SaveIssued(issued); err != nil {
			return nil, err
		}
	}
	cert, err := checkIssued(issued, key)
	if err != nil {
		_ = st.DropIssued()
		return nil, err
	}

	params := map[string]string{"SerialNumber": serial}
	for k, v := range cfg.Parameters {
		params[k] = v
	}
	reg, err := registerThing(ctx, conn, cfg.Template, issued.OwnershipToken, params)
	if err != nil {
		var rej *Rejected
		if errors.As(err, &rej) && rej.StatusCode >= 400 && rej.StatusCode < 500 && rej.ErrorCode != "ThrottlingException" {
			// The token or the certificate is what the cloud refused
			// more often than the template: the next attempt starts
			// from a new CSR rather than repeating a refused one.
			_ = st.DropIssued()
		}
		return nil, err
	}
	id := identity.Identity{
		ThingName:           reg.ThingName,
		CertificateID:       issued.CertificateID,
		DeviceConfiguration: reg.DeviceConfiguration,
		Template:            cfg.Template,
		NotBefore:           cert.NotBefore,
		NotAfter:            cert.NotAfter,
		ProvisionedAt:       o.Clock.Now().UTC(),
	}
	if err := st.Commit(id, []byte(issued.CertificatePEM)); err != nil {
		return nil, err
	}
	return st.Load()
}

type csrAccepted struct {
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
}

func createFromCSR(ctx context.Context, conn *mqtt.Conn, key crypto.Signer, serial string, clk clock.Clock) (identity.Issued, error) {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial}}, key)
	if err != nil {
		return identity.Issued{}, fmt.Errorf("provision: create CSR: %w", err)
	}
	body, _ := json.Marshal(map[string]string{
		"certificateSigningRequest": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	var acc csrAccepted
	if err := request(ctx, conn, "CreateCertificateFromCsr", TopicCreateFromCSR, body, &acc); err != nil {
		return identity.Issued{}, err
	}
	if acc.CertificateOwnershipToken == "" || acc.CertificatePEM == "" || acc.CertificateID == "" {
		return identity.Issued{}, errors.New("provision: CreateCertificateFromCsr accepted without a certificate, its id or an ownership token")
	}
	return identity.Issued{
		CertificateID:  acc.CertificateID,
		CertificatePEM: acc.CertificatePEM,
		OwnershipToken: acc.CertificateOwnershipToken,
		ObtainedAt:     clk.Now().UTC(),
	}, nil
}

type registered struct {
	ThingName           string         `json:"thingName"`
	DeviceConfiguration map[string]any `json:"deviceConfiguration"`
}

func registerThing(ctx context.Context, conn *mqtt.Conn, template, token string, params map[string]string) (registered, error) {
	body, _ := json.Marshal(map[string]any{"certificateOwnershipToken": token, "parameters": params})
	var reg registered
	if err := request(ctx, conn, "RegisterThing with template "+template, ProvisionTopic(template), body, &reg); err != nil {
		return registered{}, err
	}
	if reg.ThingName == "" {
		return registered{}, fmt.Errorf("provision: RegisterThing with template %s accepted without a thingName", template)
	}
	if err := config.CheckThingName(reg.ThingName); err != nil {
		return registered{}, fmt.Errorf("provision: RegisterThing returned %w", err)
	}
	return reg, nil
}

// request is one round trip; a rejection becomes *Rejected.
func request(ctx context.Context, conn *mqtt.Conn, step, topic string, body []byte, into any) error {
	rctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	m, ok, err := conn.Request(rctx, topic, body, topic+"/accepted", topic+"/rejected")
	if err != nil {
		return fmt.Errorf("provision: %s: %w", step, err)
	}
	if !ok {
		rej := &Rejected{Step: step}
		if err := json.Unmarshal(m.Payload, rej); err != nil {
			rej.ErrorMessage = fmt.Sprintf("unreadable rejection %q", truncate(string(m.Payload), 200))
		}
		return rej
	}
	if err := json.Unmarshal(m.Payload, into); err != nil {
		return fmt.Errorf("provision: %s: unreadable answer: %w", step, err)
	}
	return nil
}

// checkIssued parses the issued certificate and checks it certifies key.
func checkIssued(is identity.Issued, key crypto.Signer) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(is.CertificatePEM))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("provision: certificate %s is not PEM", is.CertificateID)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("provision: certificate %s: %w", is.CertificateID, err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("provision: certificate %s does not certify the device key", is.CertificateID)
	}
	return cert, nil
}

// NewKey generates a device key as PKCS #8 PEM.
func NewKey(t config.KeyType) ([]byte, error) {
	var (
		k   crypto.Signer
		err error
	)
	switch t {
	case config.KeyRSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case config.KeyECDSAP256, "":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("provision: key type %q: use %q or %q", t, config.KeyECDSAP256, config.KeyRSA2048)
	}
	if err != nil {
		return nil, fmt.Errorf("provision: generate %s key: %w", t, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PKCS #8 PEM key.
func ParseKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
