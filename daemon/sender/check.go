package sender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvscamd/kvscamd/internal/kvs"
)

// Check asks the control plane about cfg's stream once and returns the
// line `kvscamd check` prints for it: whether the stream exists and is
// ACTIVE, its retention, and the PutMedia endpoint. It never creates the
// stream. Ring is not needed. The error is non-nil exactly when the line
// says FAIL.
func Check(ctx context.Context, cfg Config) (string, error) {
	name := cfg.Stream
	failf := func(format string, args ...any) (string, error) {
		err := fmt.Errorf(format, args...)
		return fmt.Sprintf("kvs: FAIL stream %s: %v", name, err), err
	}
	if err := kvs.CheckStreamName(name); err != nil {
		return failf("%v", err)
	}
	if cfg.Credentials == nil {
		return failf("no credentials; fix [credentials] first")
	}
	hc := &http.Client{Timeout: controlCallTimeout}
	c := newControl(&cfg, cfg.Credentials, hc, nil)
	cctx, cancel := context.WithTimeout(ctx, controlCallTimeout)
	defer cancel()
	out, err := c.client.DescribeStream(cctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
	var nf *types.ResourceNotFoundException
	switch {
	case errors.As(err, &nf) && cfg.CreateStream:
		return fmt.Sprintf("kvs: ok stream %s does not exist yet; kvscamd run creates it (kvs.create_stream = true)", name), nil
	case errors.As(err, &nf):
		return failf("does not exist in %s; create it (aws kinesisvideo create-stream --stream-name %s --media-type video/h264 --data-retention-in-hours 24) or set kvs.create_stream = true", cfg.Region, name)
	case err != nil:
		return failf("%v", c.fail("DescribeStream", err))
	case out.StreamInfo == nil:
		return failf("DescribeStream answered without StreamInfo")
	}
	info := out.StreamInfo
	if info.Status != types.StatusActive {
		return failf("status %s; it must be ACTIVE to take data", info.Status)
	}
	ep, err := c.dataEndpoint(cctx, time.Now())
	if err != nil {
		return failf("%v", err)
	}
	ret := "no retention (fragments are acknowledged when received, and not kept)"
	if h := aws.ToInt32(info.DataRetentionInHours); h > 0 {
		ret = fmt.Sprintf("retention %dh", h)
	}
	return fmt.Sprintf("kvs: ok stream %s ACTIVE, %s, PutMedia endpoint %s", name, ret, ep), nil
}
