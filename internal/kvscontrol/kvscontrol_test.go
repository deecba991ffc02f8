package kvscontrol_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/internal/kvscontrol"
	"github.com/kvscamd/kvscamd/kvslocal"
)

const region = "eu-west-1"

// The local KVS endpoint verifies SigV4 with code of its own, so these
// calls check the signer and the request shapes independently.
func client(srv *kvslocal.Server, c aws.Credentials) *kvscontrol.Client {
	return &kvscontrol.Client{
		Endpoint: srv.URL, Region: region, UserAgent: "kvscamd-test",
		Credentials: credentials.StaticProvider{Value: credentials.Credentials{
			AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}},
	}
}

func apiError(t *testing.T, err error) *kvscontrol.APIError {
	t.Helper()
	var ae *kvscontrol.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *APIError", err, err)
	}
	return ae
}

func TestCallsAgainstLocalEndpoint(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{Region: region})
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		creds aws.Credentials
	}{
		{"long-lived keys", srv.Credentials()},
		{"session token", srv.IssueCredentials(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(srv, tc.creds)
			stream := "cam-" + strings.ReplaceAll(tc.name, " ", "-")
			_, err := c.DescribeStream(ctx, stream)
			if ae := apiError(t, err); ae.Code != "ResourceNotFoundException" || ae.StatusCode != 404 || ae.Op != "DescribeStream" {
				t.Fatalf("missing stream: %v", err)
			}
			arn, err := c.CreateStream(ctx, kvscontrol.CreateStreamInput{StreamName: stream, MediaType: "video/h264", DataRetentionInHours: 24, DeviceName: "dev"})
			if err != nil || !strings.HasPrefix(arn, "arn:aws:kinesisvideo:"+region+":") {
				t.Fatalf("CreateStream = %q, %v", arn, err)
			}
			_, err = c.CreateStream(ctx, kvscontrol.CreateStreamInput{StreamName: stream})
			if ae := apiError(t, err); ae.Code != "ResourceInUseException" {
				t.Fatalf("second CreateStream: %v", err)
			}
			info, err := c.DescribeStream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if info.Status != kvscontrol.StatusActive || info.DataRetentionInHours != 24 || info.StreamARN != arn ||
				info.MediaType != "video/h264" || info.DeviceName != "dev" || info.CreationTime == 0 {
				t.Fatalf("DescribeStream: %+v", info)
			}
			ep, err := c.GetDataEndpoint(ctx, stream, kvscontrol.APINamePutMedia)
			if err != nil || ep != srv.URL {
				t.Fatalf("GetDataEndpoint = %q, %v; want %q", ep, err, srv.URL)
			}
			_, err = c.GetDataEndpoint(ctx, stream, "PUT_SOMETHING")
			if ae := apiError(t, err); ae.Code != "InvalidArgumentException" || ae.StatusCode != 400 {
				t.Fatalf("bad API name: %v", err)
			}
		})
	}
}

func TestRefusedSignatures(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{Region: region})
	srv.CreateStream("cam", time.Hour)
	ctx := context.Background()
	good := srv.Credentials()

	bad := good
	bad.SecretAccessKey = "wrong"
	_, err := client(srv, bad).DescribeStream(ctx, "cam")
	if ae := apiError(t, err); ae.Code != "InvalidSignatureException" || ae.Message != kvslocal.MsgSignatureInvalid {
		t.Errorf("wrong secret: %v", err)
	}

	expired := srv.IssueCredentials(time.Hour)
	srv.ExpireCredentials()
	_, err = client(srv, expired).DescribeStream(ctx, "cam")
	if ae := apiError(t, err); ae.Code != "ExpiredTokenException" || ae.Message != kvslocal.MsgTokenExpired || ae.StatusCode != 403 {
		t.Errorf("expired token: %v", err)
	}

	// A clock 20 minutes slow: the service refuses the request time, and
	// the retry signed with the service's clock from the answer passes.
	c := client(srv, good)
	c.SignTime = func() time.Time { return time.Now().Add(-20 * time.Minute) }
	if _, err := c.DescribeStream(ctx, "cam"); err != nil {
		t.Fatalf("slow clock: %v", err)
	}
}

// TestClockRefused: when the retry at the service's time is refused too,
// the caller gets the refusal with the answer's Date.
func TestClockRefused(t *testing.T) {
	serverTime := time.Now().Add(20 * time.Minute).UTC().Truncate(time.Second)
	var dates []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dates = append(dates, r.Header.Get("X-Amz-Date"))
		w.Header().Set("Date", serverTime.Format(http.TimeFormat))
		w.Header().Set("x-amzn-ErrorType", "InvalidSignatureException:http://internal.amazon.com/coral/com.amazonaws.kinesisvideo/")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z (20260101T002000Z - 5 min.)"}`))
	}))
	defer hs.Close()
	c := &kvscontrol.Client{Endpoint: hs.URL, Region: region,
		Credentials: credentials.StaticProvider{Value: credentials.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "s"}}}
	_, err := c.GetDataEndpoint(context.Background(), "cam", kvscontrol.APINamePutMedia)
	ae := apiError(t, err)
	if !ae.ClockRefused() || ae.Code != "InvalidSignatureException" || ae.Header.Get("Date") == "" {
		t.Fatalf("error %+v", ae)
	}
	if len(dates) != kvscontrol.MaxAttempts {
		t.Fatalf("%d requests, want %d", len(dates), kvscontrol.MaxAttempts)
	}
	if want := serverTime.Format("20060102T150405Z"); dates[1] != want {
		t.Errorf("retry signed at %s, want the service's time %s (first at %s)", dates[1], want, dates[0])
	}
}

// TestRetries: one more attempt after a 5xx or throttling, none after
// errors a retry cannot fix.
func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		errType  string
		body     string
		calls    int32
		wantCode string
	}{
		{"5xx then success", 503, "", `{"message":"down"}`, 2, ""},
		{"throttled twice", 400, "ThrottlingException", `{"message":"slow down"}`, 2, "ThrottlingException"},
		{"not found", 404, "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.kinesisvideo/", `{"message":"no"}`, 1, "ResourceNotFoundException"},
		{"type in the body only", 400, "", `{"__type":"com.amazonaws.kinesisvideo#InvalidArgumentException","Message":"bad"}`, 1, "InvalidArgumentException"},
		{"proxy text", 407, "", "Proxy Authentication Required", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				if r.URL.Path != "/describeStream" || r.Header.Get("Content-Type") != "application/json" ||
					!strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") {
					t.Errorf("request %s %s %v", r.Method, r.URL, r.Header)
				}
				if tc.name == "5xx then success" && n == 2 {
					_, _ = w.Write([]byte(`{"StreamInfo":{"Status":"ACTIVE","DataRetentionInHours":2}}`))
					return
				}
				if tc.errType != "" {
					w.Header().Set("x-amzn-ErrorType", tc.errType)
				}
				w.Header().Set("x-amzn-RequestId", "req-1")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer hs.Close()
			c := &kvscontrol.Client{Endpoint: hs.URL + "/", Region: region,
				Credentials: credentials.StaticProvider{Value: credentials.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "s"}}}
			info, err := c.DescribeStream(context.Background(), "cam")
			if got := calls.Load(); got != tc.calls {
				t.Errorf("%d requests, want %d", got, tc.calls)
			}
			if tc.name == "5xx then success" {
				if err != nil || info.DataRetentionInHours != 2 {
					t.Fatalf("after the retry: %+v, %v", info, err)
				}
				return
			}
			ae := apiError(t, err)
			if ae.Code != tc.wantCode || ae.StatusCode != tc.status || ae.RequestID != "req-1" {
				t.Fatalf("error %+v", ae)
			}
			if tc.name == "proxy text" && !strings.Contains(ae.Error(), "Proxy Authentication Required") {
				t.Errorf("error text %q lacks the proxy's answer", ae.Error())
			}
		})
	}
}

func TestDefaultEndpoint(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-1":  "https://kinesisvideo.eu-west-1.amazonaws.com",
		"cn-north-1": "https://kinesisvideo.cn-north-1.amazonaws.com.cn",
	} {
		if got := kvscontrol.DefaultEndpoint(region); got != want {
			t.Errorf("DefaultEndpoint(%s) = %s, want %s", region, got, want)
		}
	}
}
