// Package kvscontrol is a client for the few Kinesis Video Streams
// control-plane calls kvscamd makes: DescribeStream, CreateStream and
// GetDataEndpoint. They are REST-JSON POSTs signed with SigV4; written out
// by hand they cost a few hundred lines, where the SDK's generated client
// and its runtime cost several MiB of binary and resident memory on the
// camera.
//
// Errors from the service come back as *APIError, with the exception name
// the service put in the x-amzn-ErrorType header (or the body's __type)
// and its message; the caller decides what they mean.
package kvscontrol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/internal/sigv4"
	"github.com/kvscamd/kvscamd/internal/untrusted"
)

// Service is the SigV4 service name of Kinesis Video Streams.
const Service = "kinesisvideo"

// Stream statuses (StreamInfo.Status).
const (
	StatusActive   = "ACTIVE"
	StatusCreating = "CREATING"
	StatusUpdating = "UPDATING"
	StatusDeleting = "DELETING"
)

// APINamePutMedia is GetDataEndpoint's APIName for PutMedia.
const APINamePutMedia = "PUT_MEDIA"

// Limits and retries of one call.
const (
	// MaxAttempts: a call that failed in a way a second try may fix
	// (throttling, a 5xx, a broken connection) is made once more; the
	// caller has its own back-off for everything beyond a blip.
	MaxAttempts = 2
	// retryWaitMax caps the random wait before the second attempt.
	retryWaitMax = time.Second
	// maxResponseBody bounds what is read of an answer; real ones are
	// well under a KiB.
	maxResponseBody = 64 << 10
	// maxMessageLen bounds how much of the service's message is quoted.
	maxMessageLen = 512
	// minSkewCorrection: a request time refused while the service's clock
	// (its Date header) is closer than this to the signing time is not a
	// clock problem a corrected time would fix.
	minSkewCorrection = time.Minute
)

// throttleCodes are exception names that mean "slow down": worth the one
// retry, like a 5xx.
var throttleCodes = map[string]bool{
	"Throttling": true, "ThrottlingException": true, "ThrottledException": true,
	"RequestThrottledException": true, "TooManyRequestsException": true,
	"RequestLimitExceeded": true, "LimitExceededException": true, "RequestThrottled": true,
	"RequestTimeout": true, "RequestTimeoutException": true,
}

// Client calls the control plane. Set Endpoint (or Region alone for the
// region's public endpoint), Region and Credentials; the rest may stay
// zero.
type Client struct {
	// Endpoint is the base URL, e.g. https://kinesisvideo.eu-west-1.amazonaws.com
	// or a local endpoint; empty means DefaultEndpoint(Region).
	Endpoint    string
	Region      string
	Credentials credentials.Provider
	// HTTP sends the requests; nil means http.DefaultClient. Bound each
	// call with the context or the client's Timeout.
	HTTP *http.Client
	// SignTime is the time requests are signed with; nil means time.Now.
	// A device whose clock is off passes the clock plus the offset it
	// learnt from a refused request.
	SignTime  func() time.Time
	UserAgent string
}

// DefaultEndpoint is the region's public control-plane endpoint.
func DefaultEndpoint(region string) string {
	host := "kinesisvideo." + region + ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		host += ".cn"
	}
	return "https://" + host
}

// StreamInfo is DescribeStream's description of a stream (the fields
// kvscamd reads).
type StreamInfo struct {
	StreamName           string  `json:"StreamName"`
	StreamARN            string  `json:"StreamARN"`
	Status               string  `json:"Status"`
	DataRetentionInHours int32   `json:"DataRetentionInHours"`
	MediaType            string  `json:"MediaType"`
	DeviceName           string  `json:"DeviceName"`
	KmsKeyID             string  `json:"KmsKeyId"`
	Version              string  `json:"Version"`
	CreationTime         float64 `json:"CreationTime"` // epoch seconds
}

// DescribeStream returns the stream's description. A stream that does not
// exist is an *APIError with Code "ResourceNotFoundException".
func (c *Client) DescribeStream(ctx context.Context, name string) (*StreamInfo, error) {
	var out struct {
		StreamInfo *StreamInfo `json:"StreamInfo"`
	}
	if err := c.call(ctx, "DescribeStream", "/describeStream", map[string]string{"StreamName": name}, &out); err != nil {
		return nil, err
	}
	if out.StreamInfo == nil {
		return nil, fmt.Errorf("kvscontrol: DescribeStream %s: the answer has no StreamInfo", name)
	}
	return out.StreamInfo, nil
}

// CreateStreamInput is what CreateStream sends.
type CreateStreamInput struct {
	StreamName           string `json:"StreamName"`
	MediaType            string `json:"MediaType,omitempty"`
	DataRetentionInHours int32  `json:"DataRetentionInHours"`
	DeviceName           string `json:"DeviceName,omitempty"`
}

// CreateStream creates a stream and returns its ARN. A stream that exists
// already is an *APIError with Code "ResourceInUseException".
func (c *Client) CreateStream(ctx context.Context, in CreateStreamInput) (string, error) {
	var out struct {
		StreamARN string `json:"StreamARN"`
	}
	if err := c.call(ctx, "CreateStream", "/createStream", in, &out); err != nil {
		return "", err
	}
	return out.StreamARN, nil
}

// GetDataEndpoint returns the data endpoint (a base URL) for apiName on
// the stream, e.g. APINamePutMedia.
func (c *Client) GetDataEndpoint(ctx context.Context, name, apiName string) (string, error) {
	var out struct {
		DataEndpoint string `json:"DataEndpoint"`
	}
	in := map[string]string{"StreamName": name, "APIName": apiName}
	if err := c.call(ctx, "GetDataEndpoint", "/getDataEndpoint", in, &out); err != nil {
		return "", err
	}
	return out.DataEndpoint, nil
}

// APIError is an error answer from the service.
type APIError struct {
	Op         string // "DescribeStream", ...
	StatusCode int
	Code       string // exception name, e.g. "ResourceNotFoundException"; "" when the answer named none
	Message    string
	RequestID  string
	// Header is the answer's header; Date tells the service's clock.
	Header http.Header
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = "unnamed error"
	}
	// Op is left out: callers name the operation and the stream.
	s := fmt.Sprintf("HTTP %d %s", e.StatusCode, code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request id " + e.RequestID + ")"
	}
	return s
}

// retryable reports whether a second attempt may succeed unchanged.
func (e *APIError) retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || throttleCodes[e.Code]
}

// call POSTs in as JSON to path and decodes the answer into out, with one
// retry for what a retry may fix. When the service refuses the request
// time, the retry is signed with the service's clock from the answer, at
// once: a device whose clock is off still gets its answer, and the caller
// still sees the refusal (and learns the offset) when the retry fails too.
func (c *Client) call(ctx context.Context, op, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("kvscontrol: %s: encode request: %w", op, err)
	}
	var skew time.Duration
	for attempt := 1; ; attempt++ {
		var signed time.Time
		signed, err = c.once(ctx, op, path, body, out, skew)
		if err == nil || attempt >= MaxAttempts || ctx.Err() != nil {
			return err
		}
		if d, ok := clockSkew(err, signed); ok {
			skew += d
			continue
		}
		if !retryable(err) {
			return err
		}
		wait := time.NewTimer(time.Duration(rand.Int64N(int64(retryWaitMax))))
		select {
		case <-ctx.Done():
			wait.Stop()
			return err
		case <-wait.C:
		}
	}
}

// clockSkew returns how far the service's clock is from signed when err
// is a refused request time whose answer tells the service's time.
func clockSkew(err error, signed time.Time) (time.Duration, bool) {
	var ae *APIError
	if !errors.As(err, &ae) || !ae.ClockRefused() {
		return 0, false
	}
	t, perr := http.ParseTime(ae.Header.Get("Date"))
	if perr != nil {
		return 0, false
	}
	d := t.Sub(signed)
	if d < minSkewCorrection && d > -minSkewCorrection {
		return 0, false
	}
	return d, true
}

// ClockRefused reports whether the service refused the request time
// (the signing clock is off by more than the service allows).
func (e *APIError) ClockRefused() bool {
	for _, s := range []string{e.Code, e.Message} {
		l := strings.ToLower(s)
		if strings.Contains(l, "signature expired") || strings.Contains(l, "signature not yet current") ||
			strings.Contains(l, "request has expired") || s == "RequestExpired" || s == "SignatureExpired" ||
			s == "RequestTimeTooSkewed" || s == "RequestInTheFuture" {
			return true
		}
	}
	return false
}

func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.retryable()
	}
	var se *signError
	return !errors.As(err, &se) // transport errors: the connection broke or timed out
}

// signError is a request that could not be signed; retrying cannot help.
type signError struct{ err error }

func (e *signError) Error() string { return e.err.Error() }
func (e *signError) Unwrap() error { return e.err }

// once makes one attempt, signed at SignTime plus skew, and returns the
// signing time.
func (c *Client) once(ctx context.Context, op, path string, body []byte, out any, skew time.Duration) (signed time.Time, err error) {
	endpoint := strings.TrimRight(c.Endpoint, "/")
	if endpoint == "" {
		endpoint = DefaultEndpoint(c.Region)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+path, bytes.NewReader(body))
	if err != nil {
		return signed, &signError{fmt.Errorf("kvscontrol: %s: control endpoint %q: %w", op, endpoint, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if c.Credentials == nil {
		return signed, &signError{fmt.Errorf("kvscontrol: %s: no credentials provider", op)}
	}
	creds, err := c.Credentials.Retrieve(ctx)
	if err != nil {
		return signed, &signError{fmt.Errorf("kvscontrol: %s: get credentials: %w", op, err)}
	}
	now := time.Now
	if c.SignTime != nil {
		now = c.SignTime
	}
	key := sigv4.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}
	signed = now().Add(skew)
	if err := sigv4.Sign(req, key, Service, c.Region, sigv4.PayloadHash(body), signed); err != nil {
		return signed, &signError{fmt.Errorf("kvscontrol: %s: %w", op, err)}
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return signed, fmt.Errorf("kvscontrol: %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return signed, fmt.Errorf("kvscontrol: %s: read answer: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return signed, decodeError(op, resp, data)
	}
	if len(data) > maxResponseBody {
		return signed, fmt.Errorf("kvscontrol: %s: answer larger than %d bytes", op, maxResponseBody)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return signed, fmt.Errorf("kvscontrol: %s: the answer is not the expected JSON (HTTP %d, %d bytes): %w", op, resp.StatusCode, len(data), err)
	}
	return signed, nil
}

// decodeError reads the exception name from the x-amzn-ErrorType header
// (cut at the first colon, which starts the service's namespace) or else
// from the body's __type or code (cut after a '#'), and the message from
// the body's message or Message.
func decodeError(op string, resp *http.Response, body []byte) *APIError {
	e := &APIError{Op: op, StatusCode: resp.StatusCode, Header: resp.Header,
		RequestID: resp.Header.Get("X-Amzn-Requestid")}
	var b struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	_ = json.Unmarshal(body, &b) // not JSON: no names from the body
	code := resp.Header.Get("X-Amzn-Errortype")
	if code == "" {
		code = b.Type
	}
	if code == "" {
		code = b.Code
	}
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	e.Code = strings.TrimSpace(code)
	msg := b.Message
	if msg == "" {
		msg = b.Message2
	}
	if msg == "" && b.Type == "" && b.Code == "" {
		msg = string(bytes.TrimSpace(body)) // a proxy's text or HTML answer
	}
	e.Message = untrusted.Text(msg, maxMessageLen)
	return e
}
