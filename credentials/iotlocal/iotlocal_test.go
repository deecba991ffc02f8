package iotlocal_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/credentials/iotlocal"
	"github.com/kvscamd/kvscamd/credentials/testpki"
)

// client returns an HTTP client presenting leaf and trusting the set's CA.
func client(pki *testpki.Set, leaf *testpki.Leaf) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      pki.CA.Pool(),
		Certificates: []tls.Certificate{leaf.TLSCertificate()},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := leaf.TLSCertificate()
			return &c, nil
		},
	}}, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, srv *iotlocal.Server, alias, thing string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+srv.Endpoint()+"/role-aliases/"+alias+"/credentials", nil)
	if err != nil {
		t.Fatal(err)
	}
	if thing != "" {
		req.Header.Set("x-amzn-iot-thingname", thing)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestServer(t *testing.T) {
	pki, err := testpki.Generate(t.TempDir(), "cam-0001")
	if err != nil {
		t.Fatal(err)
	}
	issued := 0
	srv, err := iotlocal.Start(iotlocal.Config{
		TLS:         pki.ServerTLS(),
		RoleAliases: []string{"kvscamd", "other"},
		Things:      map[string]string{"front-door": "cam-0001"},
		Lifetime:    30 * time.Minute,
		Issue: func(ctx context.Context, req iotlocal.Request) (iotlocal.Credentials, error) {
			issued++
			if req.CertCN != "cam-0001" || req.Lifetime != 30*time.Minute {
				return iotlocal.Credentials{}, fmt.Errorf("unexpected request %+v", req)
			}
			return iotlocal.Credentials{AccessKeyID: fmt.Sprintf("ASIAFROMCALLBACK%04d", issued), SecretAccessKey: "callback-secret",
				SessionToken: "callback-token", Expiration: time.Now().Add(req.Lifetime)}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := client(pki, pki.Client.Leaf)

	code, body := get(t, c, srv, "kvscamd", "front-door") // mapped thing name
	creds, _ := body["credentials"].(map[string]any)
	if code != 200 || creds["accessKeyId"] != "ASIAFROMCALLBACK0001" || creds["sessionToken"] != "callback-token" {
		t.Fatalf("mapped thing: %d %v", code, body)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(creds["expiration"])); err != nil {
		t.Fatalf("expiration: %v", err)
	}
	for _, tc := range []struct {
		alias, thing string
		code         int
		msg          string
	}{
		{"kvscamd", "cam-0001", 403, iotlocal.MsgInvalidThing}, // a mapping is configured: the CN alone is not enough
		{"nosuch", "front-door", 404, iotlocal.MsgNoAlias},
		{"other", "", 200, ""}, // no header: no thing check, like the real service
	} {
		code, body := get(t, c, srv, tc.alias, tc.thing)
		if code != tc.code || (tc.msg != "" && body["message"] != tc.msg) {
			t.Errorf("%s/%s: %d %v, want %d %q", tc.alias, tc.thing, code, body, tc.code, tc.msg)
		}
	}
	srv.Fail(429, "Rate exceeded", 1)
	if code, body := get(t, c, srv, "kvscamd", "front-door"); code != 429 || body["message"] != "Rate exceeded" {
		t.Errorf("injected fault: %d %v", code, body)
	}
	if code, _ := get(t, c, srv, "kvscamd", "front-door"); code != 200 {
		t.Errorf("fault for one request lasted longer: %d", code)
	}
	if srv.Requests() != 6 || srv.Served() != 3 || len(srv.Issued()) != 3 {
		t.Errorf("requests %d served %d issued %d", srv.Requests(), srv.Served(), len(srv.Issued()))
	}
	if s := fmt.Sprintf("%v %+v %#v", srv.Issued()[0], srv.Issued()[0], srv.Issued()[0]); strings.Contains(s, "callback-secret") || strings.Contains(s, "callback-token") {
		t.Errorf("Credentials print their secrets: %s", s)
	}

	// A client certificate from another CA never reaches the handler.
	if _, err := client(pki, pki.OtherClient.Leaf).Get("https://" + srv.Endpoint() + "/role-aliases/kvscamd/credentials"); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
	if srv.Requests() != 6 {
		t.Errorf("rejected handshake counted as a request")
	}

	// Stop refuses connections; Restart serves on the same address.
	addr := srv.Endpoint()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("https://" + addr + "/role-aliases/kvscamd/credentials"); err == nil {
		t.Fatal("stopped server answered")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Endpoint() != addr {
		t.Fatalf("restart moved from %s to %s", addr, srv.Endpoint())
	}
	if code, _ := get(t, c, srv, "kvscamd", "front-door"); code != 200 {
		t.Fatalf("after restart: %d", code)
	}
}

func TestStartNeedsClientAuth(t *testing.T) {
	pki, err := testpki.Generate(t.TempDir(), "cam-0001")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pki.ServerTLS()
	cfg.ClientAuth = tls.RequestClientCert
	if _, err := iotlocal.Start(iotlocal.Config{TLS: cfg}); err == nil {
		t.Fatal("Start accepted a TLS config that does not verify client certificates")
	}
}

func TestIssueFrom(t *testing.T) {
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	var asked time.Duration
	issue := iotlocal.IssueFrom(func(lifetime time.Duration) aws.Credentials {
		asked = lifetime
		return aws.Credentials{AccessKeyID: "ASIAMINTED0000000001", SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: exp}
	})
	c, err := issue(context.Background(), iotlocal.Request{Lifetime: 7 * time.Second})
	if err != nil || asked != 7*time.Second || c.AccessKeyID != "ASIAMINTED0000000001" || c.SecretAccessKey != "s" ||
		c.SessionToken != "t" || !c.Expiration.Equal(exp) {
		t.Fatalf("IssueFrom: %v %v %v", c, asked, err)
	}
}
