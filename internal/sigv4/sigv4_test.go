package sigv4_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvscamd/kvscamd/internal/sigv4"
)

// The SDK's signer is the reference: for the same request, credentials and
// time both must produce the same Authorization header. (Test-only: the
// SDK does not enter the daemon's binary through this file.)

type signCase struct {
	name    string
	method  string
	url     string
	host    string // r.Host override
	headers map[string][]string
	body    []byte
	chunked bool // streamed body of unknown length, like PutMedia
	creds   sigv4.Credentials
	region  string
	at      time.Time
}

func signCases() []signCase {
	static := sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	session := sigv4.Credentials{AccessKeyID: "ASIAEXAMPLE00000001", SecretAccessKey: "session/secret+key=0123456789abcdefghij",
		SessionToken: "IQoJb3JpZ2luX2VjEXAMPLE//////////token+with/odd=chars"}
	t0 := time.Date(2026, 12, 3, 17, 4, 5, 0, time.UTC)
	putMedia := map[string][]string{
		"X-Amzn-Stream-Name":                      {"cam-0001"},
		"X-Amzn-Fragment-Timecode-Type":           {"ABSOLUTE"},
		"X-Amzn-Producer-Start-Timestamp":         {"1764781445.123"},
		"X-Amzn-Fragment-Acknowledgment-Required": {"1"},
		"Content-Type":                            {"application/json"},
		"User-Agent":                              {"kvscamd"},
	}
	json := []byte(`{"StreamName":"cam-0001"}`)
	return []signCase{
		{name: "putmedia static", method: "POST", url: "https://s-1234abcd.kinesisvideo.eu-west-1.amazonaws.com/putMedia",
			headers: putMedia, chunked: true, creds: static, region: "eu-west-1", at: t0},
		{name: "putmedia session token", method: "POST", url: "https://s-1234abcd.kinesisvideo.eu-west-1.amazonaws.com/putMedia",
			headers: putMedia, chunked: true, creds: session, region: "eu-west-1", at: t0},
		{name: "putmedia other region and day", method: "POST", url: "https://s-9.kinesisvideo.ap-southeast-2.amazonaws.com/putMedia",
			headers: putMedia, chunked: true, creds: session, region: "ap-southeast-2", at: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "control describe", method: "POST", url: "https://kinesisvideo.eu-west-1.amazonaws.com/describeStream",
			headers: map[string][]string{"Content-Type": {"application/json"}}, body: json, creds: static, region: "eu-west-1", at: t0},
		{name: "control with token, local time zone", method: "POST", url: "https://kinesisvideo.us-east-1.amazonaws.com/getDataEndpoint",
			headers: map[string][]string{"Content-Type": {"application/json"}}, body: json, creds: session, region: "us-east-1",
			at: time.Date(2026, 6, 30, 23, 59, 59, 0, time.FixedZone("CEST", 2*3600))},
		{name: "empty body", method: "POST", url: "https://kinesisvideo.eu-west-1.amazonaws.com/listStreams",
			creds: static, region: "eu-west-1", at: t0},
		{name: "local endpoint with port", method: "POST", url: "http://127.0.0.1:43127/describeStream",
			headers: map[string][]string{"Content-Type": {"application/json"}}, body: json, creds: static, region: "eu-west-1", at: t0},
		{name: "default https port dropped", method: "POST", url: "https://kinesisvideo.eu-west-1.amazonaws.com:443/describeStream",
			body: json, creds: static, region: "eu-west-1", at: t0},
		{name: "host override", method: "POST", url: "https://10.0.0.1/describeStream", host: "kvs.example.test",
			body: json, creds: static, region: "eu-west-1", at: t0},
		{name: "path with special characters", method: "GET", url: "https://example.amazonaws.com/a%20b/c+d/%E2%82%AC/x=y;z/~tilde/",
			creds: static, region: "eu-west-1", at: t0},
		{name: "path with escaped slash", method: "GET", url: "https://example.amazonaws.com/a%2Fb//c",
			creds: session, region: "eu-west-1", at: t0},
		{name: "query string", method: "GET", url: "https://example.amazonaws.com/?b=2&a=1&a=0&c=x%20y&d=p+q&e=%2F~&empty=&flag",
			creds: static, region: "eu-west-1", at: t0},
		{name: "query keys sharing a prefix", method: "GET", url: "https://example.amazonaws.com/list?a-b=1&a=2&A=3&%C3%A9=4",
			creds: session, region: "eu-central-1", at: t0},
		{name: "header values with spaces and repeats", method: "POST", url: "https://example.amazonaws.com/op",
			headers: map[string][]string{"X-Amz-Meta-Note": {"  two   spaces  ", "second"}, "X-Custom": {"a\tb"},
				"Expect": {"100-continue"}, "X-Amzn-Trace-Id": {"Root=1"}},
			body: []byte("x"), creds: static, region: "eu-west-1", at: t0},
	}
}

func newRequest(t *testing.T, c signCase) *http.Request {
	t.Helper()
	var body *bytes.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	var r *http.Request
	var err error
	if body != nil {
		r, err = http.NewRequest(c.method, c.url, body)
	} else {
		r, err = http.NewRequest(c.method, c.url, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.chunked {
		r.Body = http.NoBody
		r.ContentLength = -1
	}
	if c.host != "" {
		r.Host = c.host
	}
	for k, vs := range c.headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

func payloadHash(c signCase) string {
	if c.chunked {
		return sigv4.EmptyPayloadHash
	}
	return sigv4.PayloadHash(c.body)
}

func TestSignMatchesSDK(t *testing.T) {
	sdk := v4.NewSigner()
	for _, c := range signCases() {
		t.Run(c.name, func(t *testing.T) {
			ours := newRequest(t, c)
			if err := sigv4.Sign(ours, c.creds, "kinesisvideo", c.region, payloadHash(c), c.at); err != nil {
				t.Fatal(err)
			}
			ref := newRequest(t, c)
			ac := aws.Credentials{AccessKeyID: c.creds.AccessKeyID, SecretAccessKey: c.creds.SecretAccessKey, SessionToken: c.creds.SessionToken}
			if err := sdk.SignHTTP(context.Background(), ac, ref, payloadHash(c), "kinesisvideo", c.region, c.at); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token"} {
				if got, want := ours.Header.Get(h), ref.Header.Get(h); got != want {
					t.Errorf("%s:\n ours %q\n SDK  %q", h, got, want)
				}
			}
			if ours.Host != ref.Host {
				t.Errorf("Host: ours %q, SDK %q", ours.Host, ref.Host)
			}
		})
	}
}

// TestSignKnownVector pins one signature, so that the test above cannot
// pass by both signers changing the same way.
func TestSignKnownVector(t *testing.T) {
	// The "get-vanilla" case of the SigV4 test suite: GET / on
	// example.amazonaws.com, service "service", us-east-1, 2015-08-30.
	r, _ := http.NewRequest("GET", "https://example.amazonaws.com/", nil)
	c := sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	if err := sigv4.Sign(r, c, "service", "us-east-1", sigv4.EmptyPayloadHash, time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	const want = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, " +
		"SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	if got := r.Header.Get("Authorization"); got != want {
		t.Fatalf("Authorization\n got %s\nwant %s", got, want)
	}
}

func TestSignRefusesIncompleteInput(t *testing.T) {
	good := sigv4.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}
	for _, c := range []struct {
		name            string
		creds           sigv4.Credentials
		service, region string
		hash            string
		want            string
	}{
		{"no access key", sigv4.Credentials{SecretAccessKey: "s"}, "kinesisvideo", "eu-west-1", sigv4.EmptyPayloadHash, "access key"},
		{"no secret", sigv4.Credentials{AccessKeyID: "AKID"}, "kinesisvideo", "eu-west-1", sigv4.EmptyPayloadHash, "secret"},
		{"no region", good, "kinesisvideo", "", sigv4.EmptyPayloadHash, "region"},
		{"no service", good, "", "eu-west-1", sigv4.EmptyPayloadHash, "service"},
		{"no payload hash", good, "kinesisvideo", "eu-west-1", "", "EmptyPayloadHash"},
	} {
		r, _ := http.NewRequest("POST", "https://kinesisvideo.eu-west-1.amazonaws.com/describeStream", nil)
		err := sigv4.Sign(r, c.creds, c.service, c.region, c.hash, time.Now())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Sign = %v, want an error about %s", c.name, err, c.want)
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("%s: Authorization set despite the error", c.name)
		}
	}
}

func BenchmarkSignPutMedia(b *testing.B) {
	c := signCases()[1]
	b.ReportAllocs()
	for b.Loop() {
		r, _ := http.NewRequest(c.method, c.url, nil)
		for k, vs := range c.headers {
			r.Header[k] = vs
		}
		if err := sigv4.Sign(r, c.creds, "kinesisvideo", c.region, sigv4.EmptyPayloadHash, c.at); err != nil {
			b.Fatal(err)
		}
	}
}
