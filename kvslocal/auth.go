package kvslocal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// SigV4 constants. The verifier below derives signatures on its own from
// the canonical request; it shares no code with any signer, so a bug in a
// client's signer cannot be mirrored here.
const (
	sigAlgorithm   = "AWS4-HMAC-SHA256"
	sigService     = "kinesisvideo"
	sigTerminator  = "aws4_request"
	amzDateFormat  = "20060102T150405Z"
	amzShortFormat = "20060102"

	// EmptyPayloadHash is the SHA-256 of no bytes: the payload hash a
	// PutMedia signer uses because the streamed body is not signed.
	EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// streamingPayload is what the Java SDK puts in x-amz-content-sha256
	// for PutMedia (without actually signing chunks); the service takes it.
	streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	unsignedPayload  = "UNSIGNED-PAYLOAD"

	// maxControlBody bounds what a control-plane request may send; real
	// requests are a few hundred bytes.
	maxControlBody = 1 << 20
)

// credential is one access key the server accepts.
type credential struct {
	secret  string
	token   string    // empty for long-lived keys
	expires time.Time // zero for long-lived keys
}

// credStore holds the keys the server accepts. Issued keys carry a session
// token and an expiry, like STS/IoT credentials.
type credStore struct {
	mu   sync.Mutex
	keys map[string]*credential
}

func newCredStore() *credStore { return &credStore{keys: map[string]*credential{}} }

func (s *credStore) add(id string, c *credential) {
	s.mu.Lock()
	s.keys[id] = c
	s.mu.Unlock()
}

func (s *credStore) get(id string) (credential, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.keys[id]
	if !ok {
		return credential{}, false
	}
	return *c, true
}

// expireIssued makes every issued (session-token) credential expire at t.
func (s *credStore) expireIssued(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.keys {
		if c.token != "" && c.expires.After(t) {
			c.expires = t
		}
	}
}

func randomString(prefix string, n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

const (
	upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// IssueCredentials creates temporary credentials (access key, secret,
// session token) that the server accepts until lifetime has passed on the
// server's clock, then answers 403 ExpiredTokenException. This is what the
// IoT credentials provider hands a device; use it to test rotation.
func (s *Server) IssueCredentials(lifetime time.Duration) aws.Credentials {
	id := randomString("ASIA", 16, upperDigits)
	c := &credential{
		secret:  randomString("", 40, secretChars),
		token:   randomString("IQoJ", 120, secretChars),
		expires: s.now().Add(lifetime).Truncate(time.Second),
	}
	s.creds.add(id, c)
	return aws.Credentials{
		AccessKeyID:     id,
		SecretAccessKey: c.secret,
		SessionToken:    c.token,
		Source:          "kvslocal",
		CanExpire:       true,
		Expires:         c.expires,
	}
}

// Credentials returns the long-lived key pair the server accepts (from
// Options, or generated at New).
func (s *Server) Credentials() aws.Credentials {
	return aws.Credentials{
		AccessKeyID:     s.opts.AccessKeyID,
		SecretAccessKey: s.opts.SecretAccessKey,
		Source:          "kvslocal",
	}
}

// ExpireCredentials makes every issued session credential expire now.
// Requests already in progress (open PutMedia connections) go on, as they
// do on the service; the next request signed with them gets 403.
func (s *Server) ExpireCredentials() { s.creds.expireIssued(s.now()) }

// authResult is what a verified request tells us.
type authResult struct {
	accessKey string
	region    string
}

// sigFields is a parsed Authorization header.
type sigFields struct {
	accessKey, date, region, service, terminator string
	signedHeaders                                []string
	signature                                    string
}

func parseAuthorization(h string) (sigFields, *apiError) {
	var f sigFields
	bad := func(msg string) (sigFields, *apiError) {
		return f, &apiError{http.StatusBadRequest, excIncompleteSignature, msg}
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != sigAlgorithm {
		return bad(fmt.Sprintf("Authorization header requires %s as the algorithm, got %q", sigAlgorithm, alg))
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return bad(fmt.Sprintf("Authorization header has a malformed part %q", part))
		}
		seen[k] = true
		switch k {
		case "Credential":
			p := strings.Split(v, "/")
			if len(p) != 5 {
				return bad(fmt.Sprintf("Credential %q must have the form <key>/<date>/<region>/<service>/aws4_request", v))
			}
			f.accessKey, f.date, f.region, f.service, f.terminator = p[0], p[1], p[2], p[3], p[4]
		case "SignedHeaders":
			f.signedHeaders = strings.Split(v, ";")
		case "Signature":
			f.signature = v
		}
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if !seen[k] {
			return bad(fmt.Sprintf("Authorization header requires '%s' parameter.", k))
		}
	}
	return f, nil
}

// verify checks a request's SigV4 signature. payloadHash is the hex SHA-256
// the signer must have used (the body's hash for control-plane calls; for
// PutMedia see putMediaPayloadHash).
func (s *Server) verify(r *http.Request, payloadHash string) (authResult, *apiError) {
	forbidden := func(typ, msg string) (authResult, *apiError) {
		return authResult{}, &apiError{http.StatusForbidden, typ, msg}
	}
	ah := r.Header.Get("Authorization")
	if ah == "" {
		return forbidden(excMissingAuthentication, MsgMissingAuth)
	}
	f, aerr := parseAuthorization(ah)
	if aerr != nil {
		return authResult{}, aerr
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		return authResult{}, &apiError{http.StatusBadRequest, excIncompleteSignature, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."}
	}
	signTime, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return authResult{}, &apiError{http.StatusBadRequest, excIncompleteSignature, fmt.Sprintf("X-Amz-Date %q is not in the form %s", amzDate, amzDateFormat)}
	}
	if f.terminator != sigTerminator {
		return forbidden(excInvalidSignature, "Credential should be scoped with a valid terminator: 'aws4_request', not '"+f.terminator+"'.")
	}
	if f.service != sigService {
		return forbidden(excInvalidSignature, "Credential should be scoped to correct service: '"+sigService+"'.")
	}
	if f.date != signTime.Format(amzShortFormat) {
		return forbidden(excInvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '"+f.date+"' != '"+signTime.Format(amzShortFormat)+"', from '"+amzDate+"'.")
	}
	if s.opts.Region != "" && f.region != s.opts.Region {
		return forbidden(excInvalidSignature, "Credential should be scoped to a valid region, not '"+f.region+"'.")
	}
	cred, ok := s.creds.get(f.accessKey)
	if !ok {
		return forbidden(excUnrecognizedClient, MsgTokenInvalid)
	}
	now := s.now()
	token := r.Header.Get("X-Amz-Security-Token")
	if cred.token != "" || token != "" {
		if !hmac.Equal([]byte(token), []byte(cred.token)) {
			return forbidden(excUnrecognizedClient, MsgTokenInvalid)
		}
		if !now.Before(cred.expires) {
			return forbidden(excExpiredToken, MsgTokenExpired)
		}
	}
	if skew := s.opts.MaxClockSkew; signTime.Before(now.Add(-skew)) {
		return forbidden(excInvalidSignature, fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s.)",
			amzDate, now.Add(-skew).UTC().Format(amzDateFormat), now.UTC().Format(amzDateFormat), skewText(skew)))
	} else if signTime.After(now.Add(skew)) {
		return forbidden(excInvalidSignature, fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s.)",
			amzDate, now.Add(skew).UTC().Format(amzDateFormat), now.UTC().Format(amzDateFormat), skewText(skew)))
	}
	if !containsString(f.signedHeaders, "host") {
		return forbidden(excInvalidSignature, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
	}
	want := deriveSignature(cred.secret, f, amzDate, canonicalRequest(r, f.signedHeaders, payloadHash))
	if !hmac.Equal([]byte(want), []byte(f.signature)) {
		return forbidden(excInvalidSignature, MsgSignatureInvalid)
	}
	return authResult{accessKey: f.accessKey, region: f.region}, nil
}

func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", int(d/time.Minute))
	}
	return d.String()
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// canonicalRequest builds the SigV4 canonical request from what arrived on
// the wire. Go's server moves Host and Transfer-Encoding out of r.Header,
// so those two are put back from r.Host and r.TransferEncoding.
func canonicalRequest(r *http.Request, signed []string, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	// Services other than S3 encode the already-escaped path once more.
	b.WriteString(uriEncode(path, false))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "transfer-encoding":
			vals = r.TransferEncoding
			if len(vals) == 0 {
				vals = r.Header.Values(name)
			}
		case "content-length":
			vals = r.Header.Values(name)
			if len(vals) == 0 && r.ContentLength >= 0 {
				vals = []string{fmt.Sprint(r.ContentLength)}
			}
		default:
			vals = r.Header.Values(name)
		}
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(collapseSpaces(v))
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

func canonicalQuery(r *http.Request) string {
	q := r.URL.Query()
	if len(q) == 0 {
		return ""
	}
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// uriEncode percent-encodes everything but RFC 3986 unreserved characters;
// '/' is kept unless encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

func collapseSpaces(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	return strings.Join(strings.Fields(v), " ")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func deriveSignature(secret string, f sigFields, amzDate, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	scope := f.date + "/" + f.region + "/" + f.service + "/" + f.terminator
	toSign := sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	k := hmacSHA256([]byte("AWS4"+secret), f.date)
	k = hmacSHA256(k, f.region)
	k = hmacSHA256(k, f.service)
	k = hmacSHA256(k, f.terminator)
	return hex.EncodeToString(hmacSHA256(k, toSign))
}

// putMediaPayloadHash decides which payload hash a PutMedia signature is
// checked against. The body is streamed unsigned; clients sign either the
// hash of the empty string (producer-c, embedded-c, Go clients; no
// x-amz-content-sha256 header) or the literal
// STREAMING-AWS4-HMAC-SHA256-PAYLOAD (Java SDK, with that header). Both are
// known to work against the service. UNSIGNED-PAYLOAD has not been shown
// to work there, so it is refused unless Options.AcceptUnsignedPayload.
func (s *Server) putMediaPayloadHash(r *http.Request) (string, *apiError) {
	switch h := r.Header.Get("X-Amz-Content-Sha256"); h {
	case "", EmptyPayloadHash:
		return EmptyPayloadHash, nil
	case streamingPayload:
		return h, nil
	case unsignedPayload:
		if s.opts.AcceptUnsignedPayload {
			return h, nil
		}
		return "", &apiError{http.StatusForbidden, excInvalidSignature, "x-amz-content-sha256 UNSIGNED-PAYLOAD is not accepted for PutMedia; sign the SHA-256 of the empty string"}
	default:
		return "", &apiError{http.StatusForbidden, excInvalidSignature, "x-amz-content-sha256 must be the SHA-256 of the empty string for PutMedia (the body is streamed unsigned)"}
	}
}
