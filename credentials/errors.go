package credentials

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Error is a failed credentials request, described for the operator:
// what went wrong (Problem), what the server said (Message) and what to
// change (Fix). It never holds secrets.
type Error struct {
	Endpoint  string
	RoleAlias string
	Status    int    // HTTP status; 0 when there was no answer
	Message   string // the server's {"message":...}, sanitised
	Problem   string
	Fix       string
	Attempts  int
	Retryable bool // a later attempt may succeed without changing anything
	Err       error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "credentials: iot endpoint %s role alias %s: %s", e.Endpoint, e.RoleAlias, e.Problem)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.Status)
		if e.Message != "" {
			fmt.Fprintf(&b, " %q", e.Message)
		}
		b.WriteString(")")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// certAlerts are TLS alerts with which a server refuses a client
// certificate, as crypto/tls names them whatever the server's software.
var certAlerts = []string{
	"bad certificate", "unsupported certificate", "revoked certificate",
	"expired certificate", "unknown certificate", "unknown certificate authority",
	"access denied", "certificate required", "certificate unobtainable",
	"bad certificate hash value", "bad certificate status response",
}

// versionAlerts mean there is no protocol version or cipher in common.
var versionAlerts = []string{"protocol version not supported", "handshake failure", "insufficient security level"}

// transportError explains a failure below HTTP: DNS, TCP, TLS, timeouts.
func (p *IoTProvider) transportError(ctx context.Context, err error) *Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop "Get <url>:", the Error already names the endpoint
	}
	mk := func(problem, fix string, retryable bool) *Error {
		return p.newError(0, "", problem, fix, retryable, err)
	}
	ca := p.cfg.CA
	if ca == "" {
		ca = "(system CA store)"
	}
	var (
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalid     x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
		dnsErr      *net.DNSError
		netErr      net.Error
	)
	switch {
	case ctx.Err() != nil:
		return p.newError(0, "", "request abandoned", "", false, ctx.Err())
	case errors.As(err, &unknownAuth):
		issuer := ""
		if unknownAuth.Cert != nil {
			issuer = fmt.Sprintf(" (it is issued by %q)", unknownAuth.Cert.Issuer.String())
		}
		return mk(fmt.Sprintf("the server certificate of %s is not trusted by the CA file %s%s", p.host, ca, issuer),
			"set [credentials] ca to the CA bundle that signs the endpoint (AmazonRootCA1.pem for AWS IoT)", false)
	case errors.As(err, &hostErr):
		names := "no names"
		if hostErr.Certificate != nil {
			names = strings.Join(append(append([]string{}, hostErr.Certificate.DNSNames...), ipStrings(hostErr.Certificate.IPAddresses)...), ", ")
		}
		return mk(fmt.Sprintf("the server certificate is for %s, not %s", names, p.host),
			"set [credentials] endpoint to the address from `aws iot describe-endpoint --endpoint-type iot:CredentialProvider`", false)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return mk(fmt.Sprintf("the server certificate of %s is expired or not yet valid by the system clock (%s)", p.host, p.o.clock.Now().UTC().Format(time.RFC3339)),
			"check the system clock (NTP); if it is right, the endpoint is misconfigured", false)
	case errors.As(err, &invalid), errors.As(err, &verifyErr):
		return mk(fmt.Sprintf("the server certificate of %s failed verification against the CA file %s", p.host, ca),
			"check [credentials] ca and endpoint", false)
	case errors.As(err, &recordErr):
		return mk(fmt.Sprintf("%s did not answer with TLS", p.addr),
			"check the port in [credentials] endpoint (the credentials provider listens on 443)", false)
	}
	if alert, ok := remoteAlert(err); ok {
		for _, a := range certAlerts {
			if alert == a {
				return mk(fmt.Sprintf("the server rejected the client certificate %s (TLS alert %q)", p.cfg.Cert, alert),
					"check that the certificate is registered and ACTIVE in AWS IoT in the endpoint's account and region, attached to thing "+
						p.cfg.ThingName+", and that the key file belongs to it", false)
			}
		}
		for _, a := range versionAlerts {
			if alert == a {
				return mk(fmt.Sprintf("TLS handshake with %s failed (TLS alert %q)", p.addr, alert),
					"this client needs TLS 1.2 or newer with modern ciphers; check that the endpoint is the AWS IoT credentials provider", false)
			}
		}
		if alert == "unrecognized name" {
			return mk(fmt.Sprintf("the server does not know the name %s (TLS alert %q)", p.host, alert),
				"set [credentials] endpoint to the address from `aws iot describe-endpoint --endpoint-type iot:CredentialProvider`", false)
		}
		return mk(fmt.Sprintf("TLS connection to %s failed (TLS alert %q)", p.addr, alert), "", true)
	}
	switch {
	case errors.As(err, &dnsErr):
		return mk(fmt.Sprintf("cannot resolve %s", p.host),
			"check [credentials] endpoint and the device's DNS and network", true)
	case errors.Is(err, syscall.ECONNREFUSED):
		return mk(fmt.Sprintf("connection to %s refused", p.addr),
			"check [credentials] endpoint and port, and that the network and firewall allow it", true)
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return mk(fmt.Sprintf("%s is unreachable", p.addr), "check the device's network connection and routes", true)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return mk(fmt.Sprintf("no answer from %s within the timeout (connect %s, request %s)", p.addr, p.cfg.ConnectTimeout, p.cfg.RequestTimeout),
			"check the network; a firewall that drops packets to port 443 also looks like this", true)
	}
	return mk(fmt.Sprintf("connection to %s failed", p.addr), "check the network", true)
}

// remoteAlert finds a TLS alert sent by the peer. crypto/tls reports it
// as a net.OpError with Op "remote error" around an unexported type, so
// the text is all there is to go on.
func remoteAlert(err error) (string, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return strings.TrimPrefix(op.Err.Error(), "tls: "), true
	}
	const marker = "remote error: tls: "
	if s := err.Error(); strings.Contains(s, marker) {
		rest := s[strings.Index(s, marker)+len(marker):]
		if i := strings.IndexAny(rest, ";:\n"); i >= 0 {
			rest = rest[:i]
		}
		return strings.TrimSpace(rest), true
	}
	return "", false
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
