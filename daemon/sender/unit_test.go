package sender

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/internal/clock"
)

func TestAckErrorClass(t *testing.T) {
	want := map[int]Class{
		4000: ClassRetry, 4003: ClassRetry, 5000: ClassRetry, 5001: ClassRetry, 7000: ClassRetry, 4013: ClassRetry, 0: ClassRetry,
		4001: ClassSkip, 4002: ClassSkip, 4005: ClassSkip, 4006: ClassSkip,
		4009: ClassSkip, 4010: ClassSkip, 4011: ClassSkip, 4012: ClassSkip,
		4004: ClassRestart, 4007: ClassSetAside, 4008: ClassOperator,
	}
	for id := 4500; id <= 4507; id++ {
		want[id] = ClassOperator
	}
	for id, c := range want {
		if got := AckErrorClass(id); got != c {
			t.Errorf("AckErrorClass(%d) = %v, want %v", id, got, c)
		}
		if (c == ClassOperator || c == ClassSetAside) && ackErrorHint(id) == "" {
			t.Errorf("operator code %d has no hint", id)
		}
	}
}

func TestPutMediaHTTPError(t *testing.T) {
	cases := []struct {
		status int
		typ    string
		body   string
		want   Class
		// amz puts the type in x-amz-ErrorType instead.
		amz bool
	}{
		{400, "ClientLimitExceededException:http://internal/", `{"message":"throttled"}`, ClassThrottle, false},
		{400, "ConnectionLimitExceededException", `{"message":"one at a time"}`, ClassThrottle, false},
		{400, "InvalidEndpointException", `{"message":"wrong host"}`, ClassEndpoint, false},
		{403, "", `{"message":"The security token included in the request is expired"}`, ClassAuth, false},
		{403, "ExpiredTokenException", `{"message":"whatever"}`, ClassAuth, false},
		{403, "AccessDeniedException", `{"message":"no"}`, ClassDenied, false},
		{401, "NotAuthorizedException", `{"message":"no"}`, ClassDenied, false},
		{400, "InvalidSignatureException", `{"message":"Signature expired: 20260101T000000Z is now earlier than ... RequestExpired"}`, ClassClock, false},
		{403, "InvalidSignatureException", `{"message":"Signature expired: 20260101T000000Z is now earlier than 20260101T001000Z"}`, ClassClock, false},
		{400, "ClientLimitExceededException", `{"message":"slow down"}`, ClassThrottle, true},
		{404, "ResourceNotFoundException", `{"message":"no stream"}`, ClassStream, false},
		{503, "ServiceUnavailableException", `{}`, ClassRetry, false},
		{500, "", `oops`, ClassRetry, false},
	}
	for _, c := range cases {
		resp := &http.Response{StatusCode: c.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(c.body))}
		switch {
		case c.typ != "" && c.amz:
			resp.Header.Set("x-amz-ErrorType", c.typ)
		case c.typ != "":
			resp.Header.Set("x-amzn-ErrorType", c.typ)
		}
		err := putMediaHTTPError("s", resp, time.Now())
		if got := classOf(err); got != c.want {
			t.Errorf("%d %s %s: class %v, want %v (%v)", c.status, c.typ, c.body, got, c.want, err)
		}
	}
}

// A refused request time teaches the offset from the Date header.
func TestPutMediaClockOffset(t *testing.T) {
	device := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	service := device.Add(20 * time.Minute)
	resp := &http.Response{StatusCode: 403, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"message":"Signature expired: 20260101T000000Z is now earlier than 20260101T001500Z"}`))}
	resp.Header.Set("Date", service.Format(http.TimeFormat))
	f, ok := clockFailureOf(putMediaHTTPError("s", resp, device))
	if !ok || !f.hasOffset || f.offset != 20*time.Minute {
		t.Fatalf("clock failure %+v (ok %v): want an offset of 20m learnt from the Date header", f, ok)
	}
}

func TestProducerTimestamp(t *testing.T) {
	for ms, want := range map[int64]string{1700000000123: "1700000000.123", 1700000000005: "1700000000.005", 0: "0.000"} {
		if got := producerTimestamp(ms); got != want {
			t.Errorf("producerTimestamp(%d) = %q, want %q", ms, got, want)
		}
	}
}

func TestBucket(t *testing.T) {
	start := time.Unix(1e9, 0)
	clk := clock.NewFake(start)
	clk.AutoAdvance()              // the clock moves by exactly what the bucket sleeps
	b := newBucket(clk, 1000, 100) // 1000 tokens/s, burst 100
	ctx := context.Background()
	for range 11 {
		if err := b.wait(ctx, 100); err != nil {
			t.Fatal(err)
		}
	}
	// 1100 tokens at 1000/s with 100 in the bucket: 1 s of waiting.
	if slept := clk.Now().Sub(start); slept < 990*time.Millisecond || slept > 1010*time.Millisecond {
		t.Errorf("slept %v for 1100 tokens, want 1 s", slept)
	}
	var nilBucket *bucket
	if err := nilBucket.wait(ctx, 1e9); err != nil {
		t.Error(err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := Config{Stream: "cam", Region: "eu-west-1", Ring: &spyStore{}, Credentials: credentials.StaticProvider{Value: credentials.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}}}
	if _, err := New(good); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Stream = "bad name" }, "stream name"},
		{func(c *Config) { c.Region = "" }, "region"},
		{func(c *Config) { c.Ring = nil }, "ring"},
		{func(c *Config) { c.Credentials = nil }, "credentials"},
		{func(c *Config) { c.Mode = "sometimes" }, "mode"},
		{func(c *Config) { c.RotateAfter = time.Hour }, "rotate"},
		{func(c *Config) { c.IdleClose = time.Minute }, "idle close"},
		{func(c *Config) { c.RateLimit = -1 }, "upload_rate_limit"},
	}
	for _, c := range cases {
		cfg := good
		c.mut(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one mentioning %q", err, c.want)
		}
	}
}

func TestRetentionHours(t *testing.T) {
	for d, want := range map[time.Duration]int32{0: 0, time.Minute: 1, time.Hour: 1, 90 * time.Minute: 2, 24 * time.Hour: 24} {
		c := Config{Retention: d}
		if got := c.retentionHours(); got != want {
			t.Errorf("retentionHours(%v) = %d, want %d", d, got, want)
		}
	}
}
