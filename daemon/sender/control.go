package sender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/internal/kvscontrol"
)

// control talks to the KVS control plane: it makes sure the stream exists
// and is ACTIVE, learns its retention, and caches the PutMedia endpoint.
type control struct {
	cfg    *Config
	client *kvscontrol.Client

	mu         sync.Mutex
	ready      bool  // the stream was seen ACTIVE
	retention  int32 // hours; 0 = acknowledge on RECEIVED
	checkedAt  time.Time
	endpoint   string
	endpointAt time.Time
}

// controlCallTimeout bounds one control-plane call.
const controlCallTimeout = 30 * time.Second

// newControl returns a control-plane client. signTime, when not nil, is
// the time requests are signed with (the device clock plus the offset
// learnt from a refused request time); nil means the system clock.
func newControl(cfg *Config, creds credentials.Provider, hc *http.Client, signTime func() time.Time) *control {
	client := &kvscontrol.Client{
		Endpoint:    cfg.ControlEndpoint, // empty: the region's
		Region:      cfg.Region,
		Credentials: creds,
		HTTP:        hc,
		SignTime:    signTime,
		UserAgent:   cfg.UserAgent,
	}
	return &control{cfg: cfg, client: client}
}

// ensure checks (once, and again after invalidate) that the stream exists
// and is ACTIVE, creating it when allowed, and returns its retention in
// hours.
func (c *control) ensure(ctx context.Context) (int32, error) {
	c.mu.Lock()
	// The stream is described again now and then, so that a retention
	// changed while running is noticed (it decides whether RECEIVED or
	// PERSISTED acknowledges a fragment).
	if c.ready && time.Since(c.checkedAt) < c.cfg.EndpointTTL {
		r := c.retention
		c.mu.Unlock()
		return r, nil
	}
	c.mu.Unlock()

	name := c.cfg.Stream
	cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
	info, err := c.client.DescribeStream(cctx, name)
	cancel()
	switch {
	case isNotFound(err) && !c.cfg.CreateStream:
		return 0, fail(ClassOperator, "kvs: stream %q does not exist in %s: create it (aws kinesisvideo create-stream --stream-name %s --media-type video/h264 --data-retention-in-hours 24) or set kvs.create_stream = true", name, c.cfg.Region, name)
	case isNotFound(err):
		if err := c.create(ctx); err != nil {
			return 0, err
		}
		cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
		info, err = c.client.DescribeStream(cctx, name)
		cancel()
		if err != nil {
			return 0, c.fail("DescribeStream", err)
		}
	case err != nil:
		return 0, c.fail("DescribeStream", err)
	}
	switch info.Status {
	case kvscontrol.StatusActive:
	case kvscontrol.StatusCreating, kvscontrol.StatusUpdating:
		return 0, fail(ClassRetry, "kvs: stream %q is %s, waiting for ACTIVE", name, info.Status)
	default:
		return 0, fail(ClassOperator, "kvs: stream %q is %s: it cannot take data; recreate it", name, info.Status)
	}
	r := info.DataRetentionInHours
	c.mu.Lock()
	if c.ready && c.retention != r {
		c.cfg.Logger.Warn("stream retention changed", "from_hours", c.retention, "to_hours", r)
	}
	c.ready, c.retention, c.checkedAt = true, r, time.Now()
	c.mu.Unlock()
	return r, nil
}

// retentionNow is the retention last described.
func (c *control) retentionNow() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Duration(c.retention) * time.Hour
}

func (c *control) create(ctx context.Context) error {
	name := c.cfg.Stream
	cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
	defer cancel()
	_, err := c.client.CreateStream(cctx, kvscontrol.CreateStreamInput{
		StreamName:           name,
		MediaType:            "video/h264",
		DataRetentionInHours: c.cfg.retentionHours(),
		DeviceName:           "kvscamd",
	})
	if apiCode(err) == "ResourceInUseException" {
		return nil // created concurrently; describe will tell
	}
	if err != nil {
		return c.fail("CreateStream", err)
	}
	c.cfg.Logger.Info("created stream", "retention_hours", c.cfg.retentionHours())
	return nil
}

// dataEndpoint returns the cached PutMedia endpoint, fetching it when
// missing or older than EndpointTTL.
func (c *control) dataEndpoint(ctx context.Context, now time.Time) (string, error) {
	c.mu.Lock()
	if c.endpoint != "" && now.Sub(c.endpointAt) < c.cfg.EndpointTTL {
		ep := c.endpoint
		c.mu.Unlock()
		return ep, nil
	}
	c.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
	defer cancel()
	out, err := c.client.GetDataEndpoint(cctx, c.cfg.Stream, kvscontrol.APINamePutMedia)
	if err != nil {
		return "", c.fail("GetDataEndpoint", err)
	}
	ep := strings.TrimRight(out, "/")
	if ep == "" {
		return "", fail(ClassRetry, "kvs: GetDataEndpoint %s: empty DataEndpoint", c.cfg.Stream)
	}
	c.mu.Lock()
	c.endpoint, c.endpointAt = ep, now
	c.mu.Unlock()
	return ep, nil
}

// forgetEndpoint makes the next connection fetch the endpoint again.
func (c *control) forgetEndpoint() {
	c.mu.Lock()
	c.endpoint = ""
	c.mu.Unlock()
}

// forgetStream makes the next connection describe the stream again.
func (c *control) forgetStream() {
	c.mu.Lock()
	c.ready = false
	c.endpoint = ""
	c.mu.Unlock()
}

// fail is controlError with the clock offset learnt from the answer when
// the request time was refused.
func (c *control) fail(op string, err error) error {
	e := controlError(op, c.cfg.Stream, err)
	if f, ok := clockFailureOf(e); ok {
		var ae *kvscontrol.APIError
		if errors.As(err, &ae) && ae.Header != nil {
			now := time.Now()
			if c.cfg.Clock != nil {
				now = c.cfg.Clock.Now()
			}
			return clockFailure(f.err, ae.Header, now)
		}
	}
	return e
}

// apiCode is the exception name of a control-plane error answer, "" for
// other errors.
func apiCode(err error) string {
	var ae *kvscontrol.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// isNotFound reports a control-plane answer "no such stream".
func isNotFound(err error) bool { return apiCode(err) == "ResourceNotFoundException" }

// controlError turns a control-plane error into a failure with a class
// and a hint.
func controlError(op, stream string, err error) error {
	var ae *kvscontrol.APIError
	if !errors.As(err, &ae) {
		return &failure{class: ClassRetry, err: fmt.Errorf("kvs: %s %s: %w", op, stream, err)}
	}
	if isSignatureExpired(ae.Code) || isSignatureExpired(ae.Message) {
		return &failure{class: ClassClock, err: fmt.Errorf("kvs: %s %s: request time rejected: %w", op, stream, err)}
	}
	switch code := ae.Code; code {
	case "AccessDeniedException", "NotAuthorizedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId", "MissingAuthenticationToken", "InvalidSignatureException", "SignatureDoesNotMatch":
		if isExpiredToken(ae.Message) {
			return &failure{class: ClassAuth, err: fmt.Errorf("kvs: %s %s: credentials expired: %w", op, stream, err)}
		}
		return &failure{class: ClassDenied, err: fmt.Errorf("kvs: %s %s: access denied: the credentials need IAM permission kinesisvideo:%s on this stream (check the role behind the IoT role alias, or the static keys): %w", op, stream, op, err)}
	case "ExpiredTokenException", "ExpiredToken":
		return &failure{class: ClassAuth, err: fmt.Errorf("kvs: %s %s: credentials expired: %w", op, stream, err)}
	case "ClientLimitExceededException", "ThrottlingException", "LimitExceededException":
		return &failure{class: ClassThrottle, err: fmt.Errorf("kvs: %s %s: throttled: %w", op, stream, err)}
	case "ResourceNotFoundException":
		return &failure{class: ClassStream, err: fmt.Errorf("kvs: %s %s: stream not found: %w", op, stream, err)}
	case "AccountStreamLimitExceededException", "DeviceStreamLimitExceededException":
		return &failure{class: ClassOperator, err: fmt.Errorf("kvs: %s %s: account stream limit reached: delete unused streams or ask for a higher quota: %w", op, stream, err)}
	case "InvalidArgumentException":
		return &failure{class: ClassOperator, err: fmt.Errorf("kvs: %s %s: invalid argument (check stream name and retention): %w", op, stream, err)}
	}
	return &failure{class: ClassRetry, err: fmt.Errorf("kvs: %s %s: %w", op, stream, err)}
}
