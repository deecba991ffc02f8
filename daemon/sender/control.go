package sender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"
)

// control talks to the KVS control plane: it makes sure the stream exists
// and is ACTIVE, learns its retention, and caches the PutMedia endpoint.
type control struct {
	cfg    *Config
	client *kinesisvideo.Client

	mu         sync.Mutex
	ready      bool  // the stream was seen ACTIVE
	retention  int32 // hours; 0 = acknowledge on RECEIVED
	checkedAt  time.Time
	endpoint   string
	endpointAt time.Time
}

// sdkSkewThreshold: a signing time this far from the local clock means
// the SDK has already corrected for a clock skew it learnt itself; the
// sender's own correction is then not added on top.
const sdkSkewThreshold = time.Minute

// offsetSigner signs control-plane requests at the device clock plus the
// offset the sender learnt from a refused request time, unless the SDK
// has corrected the time itself.
type offsetSigner struct {
	inner kinesisvideo.HTTPSignerV4
	skew  func() time.Duration
}

func (o offsetSigner) SignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, t time.Time, optFns ...func(*v4.SignerOptions)) error {
	if d := time.Until(t); d < sdkSkewThreshold && d > -sdkSkewThreshold {
		t = t.Add(o.skew())
	}
	return o.inner.SignHTTP(ctx, creds, r, payloadHash, service, region, t, optFns...)
}

// controlCallTimeout bounds one control-plane call.
const controlCallTimeout = 30 * time.Second

// newControl returns a control-plane client. skew, when not nil, is how
// far the signing time is moved from the local clock.
func newControl(cfg *Config, creds aws.CredentialsProvider, hc *http.Client, skew func() time.Duration) *control {
	awsCfg := aws.Config{
		Region:      cfg.Region,
		Credentials: creds,
		HTTPClient:  hc,
		// The sender has its own back-off; one SDK retry covers blips.
		RetryMaxAttempts: 2,
	}
	client := kinesisvideo.NewFromConfig(awsCfg, func(o *kinesisvideo.Options) {
		if cfg.ControlEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.ControlEndpoint)
		}
		if skew != nil {
			o.HTTPSignerV4 = offsetSigner{inner: v4.NewSigner(), skew: skew}
		}
	})
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
	out, err := c.client.DescribeStream(cctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
	cancel()
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf) && !c.cfg.CreateStream:
		return 0, fail(ClassOperator, "kvs: stream %q does not exist in %s: create it (aws kinesisvideo create-stream --stream-name %s --media-type video/h264 --data-retention-in-hours 24) or set kvs.create_stream = true", name, c.cfg.Region, name)
	case errors.As(err, &nf):
		if err := c.create(ctx); err != nil {
			return 0, err
		}
		cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
		out, err = c.client.DescribeStream(cctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
		cancel()
		if err != nil {
			return 0, c.fail("DescribeStream", err)
		}
	case err != nil:
		return 0, c.fail("DescribeStream", err)
	}
	info := out.StreamInfo
	if info == nil {
		return 0, fail(ClassRetry, "kvs: DescribeStream %s: answer without StreamInfo", name)
	}
	switch info.Status {
	case types.StatusActive:
	case types.StatusCreating, types.StatusUpdating:
		return 0, fail(ClassRetry, "kvs: stream %q is %s, waiting for ACTIVE", name, info.Status)
	default:
		return 0, fail(ClassOperator, "kvs: stream %q is %s: it cannot take data; recreate it", name, info.Status)
	}
	r := aws.ToInt32(info.DataRetentionInHours)
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
	_, err := c.client.CreateStream(cctx, &kinesisvideo.CreateStreamInput{
		StreamName:           aws.String(name),
		MediaType:            aws.String("video/h264"),
		DataRetentionInHours: aws.Int32(c.cfg.retentionHours()),
		DeviceName:           aws.String("kvscamd"),
	})
	var inUse *types.ResourceInUseException
	if errors.As(err, &inUse) {
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
	out, err := c.client.GetDataEndpoint(cctx, &kinesisvideo.GetDataEndpointInput{
		APIName:    types.APINamePutMedia,
		StreamName: aws.String(c.cfg.Stream),
	})
	if err != nil {
		return "", c.fail("GetDataEndpoint", err)
	}
	ep := strings.TrimRight(aws.ToString(out.DataEndpoint), "/")
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
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.Response != nil {
			now := time.Now()
			if c.cfg.Clock != nil {
				now = c.cfg.Clock.Now()
			}
			return clockFailure(f.err, re.Response.Header, now)
		}
	}
	return e
}

// controlError turns an SDK error into a failure with a class and a hint.
func controlError(op, stream string, err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return &failure{class: ClassRetry, err: fmt.Errorf("kvs: %s %s: %w", op, stream, err)}
	}
	if isSignatureExpired(ae.ErrorCode()) || isSignatureExpired(ae.ErrorMessage()) {
		return &failure{class: ClassClock, err: fmt.Errorf("kvs: %s %s: request time rejected: %w", op, stream, err)}
	}
	switch code := ae.ErrorCode(); code {
	case "AccessDeniedException", "NotAuthorizedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId", "MissingAuthenticationToken", "InvalidSignatureException", "SignatureDoesNotMatch":
		if isExpiredToken(ae.ErrorMessage()) {
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
