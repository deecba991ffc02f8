// Package sigv4 signs HTTP requests with AWS Signature Version 4 (header
// form, HMAC-SHA256).
//
// It exists because the daemon signs only two kinds of request, the
// streaming PutMedia POST (whose body is not signed) and small control-plane
// JSON POSTs, and taking the SDK's signer for that brought the whole SDK
// into the binary, several MiB of it, which on a camera is as many MiB of
// resident memory. Presigned URLs, chunk signing and SigV4a are not needed
// and not here.
//
// The canonical form follows the SigV4 specification and, where the
// specification leaves room, does what the SDK's signer does, so that both
// produce the same Authorization header for the same request: every header
// is signed except a few that proxies and the transport change on the way
// (see unsignedHeaders), content-length is signed when the body length is
// known and not zero, and the already-escaped path is escaped once more.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Algorithm is the signing algorithm named in the Authorization header.
const Algorithm = "AWS4-HMAC-SHA256"

// EmptyPayloadHash is the hex SHA-256 of no bytes. Streaming requests whose
// body is not signed (PutMedia) sign it as their payload hash.
const EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Header names the signer sets.
const (
	HeaderDate          = "X-Amz-Date"
	HeaderSecurityToken = "X-Amz-Security-Token"
	HeaderAuthorization = "Authorization"
)

// Date formats of X-Amz-Date and of the credential scope.
const (
	dateTimeFormat = "20060102T150405Z"
	dateFormat     = "20060102"
	scopeEnd       = "aws4_request"
)

// unsignedHeaders are left out of the signature: the client or a proxy may
// add, drop or rewrite them after signing (lower case).
var unsignedHeaders = map[string]bool{
	"authorization":     true,
	"user-agent":        true,
	"x-amzn-trace-id":   true,
	"expect":            true,
	"transfer-encoding": true,
}

// Credentials are the keys a request is signed with. SessionToken is empty
// for long-lived keys.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// PayloadHash returns the hex SHA-256 of body, the payload hash of a
// request whose body is signed.
func PayloadHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Sign signs r for service in region at time t: it sets X-Amz-Date,
// X-Amz-Security-Token (when the credentials have a session token) and
// Authorization. payloadHash is PayloadHash of the body, or
// EmptyPayloadHash for a streamed body that is not signed. A default port
// in the host (443 for https, 80 for http) is dropped from r.Host, because
// the signed host must be what goes on the wire.
//
// Headers added to r after Sign are not covered by the signature; headers
// changed after Sign invalidate it.
func Sign(r *http.Request, c Credentials, service, region, payloadHash string, t time.Time) error {
	switch {
	case r == nil || r.URL == nil:
		return errors.New("sigv4: no request to sign")
	case c.AccessKeyID == "" || c.SecretAccessKey == "":
		return errors.New("sigv4: credentials without access key ID or secret access key")
	case service == "" || region == "":
		return fmt.Errorf("sigv4: service %q and region %q must both be set", service, region)
	case payloadHash == "":
		return errors.New("sigv4: empty payload hash: use EmptyPayloadHash for an unsigned body")
	}
	t = t.UTC()
	amzDate := t.Format(dateTimeFormat)
	day := t.Format(dateFormat)

	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set(HeaderDate, amzDate)
	if c.SessionToken != "" {
		r.Header.Set(HeaderSecurityToken, c.SessionToken)
	}
	r.Host = signedHost(r)

	names, canonHeaders := canonicalHeaders(r)
	scope := day + "/" + region + "/" + service + "/" + scopeEnd

	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(escape(uriPath(r.URL), false))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL))
	b.WriteByte('\n')
	b.WriteString(canonHeaders)
	b.WriteByte('\n')
	b.WriteString(names)
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	canonical := sha256.Sum256([]byte(b.String()))

	toSign := Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(canonical[:])
	key := mac([]byte("AWS4"+c.SecretAccessKey), day)
	key = mac(key, region)
	key = mac(key, service)
	key = mac(key, scopeEnd)
	sig := hex.EncodeToString(mac(key, toSign))

	r.Header.Set(HeaderAuthorization, Algorithm+" Credential="+c.AccessKeyID+"/"+scope+
		", SignedHeaders="+names+", Signature="+sig)
	return nil
}

func mac(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// signedHost is the request's host without a default port.
func signedHost(r *http.Request) string {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		return host
	}
	if (port == "443" && r.URL.Scheme == "https") || (port == "80" && r.URL.Scheme == "http") {
		if strings.Contains(h, ":") {
			return "[" + h + "]" // IPv6 literal
		}
		return h
	}
	return host
}

// canonicalHeaders returns the signed header names (sorted, joined by ";")
// and the canonical header block, one "name:value\n" line each.
func canonicalHeaders(r *http.Request) (names, block string) {
	vals := map[string][]string{"host": {r.Host}}
	if r.ContentLength > 0 {
		vals["content-length"] = []string{strconv.FormatInt(r.ContentLength, 10)}
	}
	for k, v := range r.Header {
		lk := strings.ToLower(k)
		if unsignedHeaders[lk] || lk == "content-length" || lk == "host" {
			continue
		}
		vals[lk] = append(vals[lk], v...)
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(':')
		for i, v := range vals[k] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(trimSpaces(v))
		}
		b.WriteByte('\n')
	}
	return strings.Join(keys, ";"), b.String()
}

// trimSpaces drops leading and trailing white space and folds runs of
// spaces into one, as the specification asks of header values.
func trimSpaces(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// uriPath is the escaped path as it goes on the wire, "/" when empty.
func uriPath(u *url.URL) string {
	p := u.EscapedPath()
	if u.Opaque != "" {
		// "//host/path" or "/path": the path starts at the first slash
		// after the optional "//" authority.
		p = strings.TrimPrefix(u.Opaque, "//")
		if i := strings.IndexByte(p, '/'); i >= 0 {
			p = p[i:]
		} else {
			p = ""
		}
	}
	if p == "" {
		return "/"
	}
	return p
}

// canonicalQuery encodes the query parameters sorted by name, then value.
func canonicalQuery(u *url.URL) string {
	q := u.Query()
	if len(q) == 0 {
		return ""
	}
	type kv struct{ k, v string }
	params := make([]kv, 0, len(q))
	for k, vs := range q {
		ek := escape(k, true)
		for _, v := range vs {
			params = append(params, kv{ek, escape(v, true)})
		}
	}
	sort.Slice(params, func(i, j int) bool {
		if params[i].k != params[j].k {
			return params[i].k < params[j].k
		}
		return params[i].v < params[j].v
	})
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// escape percent-encodes every byte but the RFC 3986 unreserved characters
// (and '/' unless slash is set), with upper-case hex digits.
func escape(s string, slash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !slash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}
