package sender

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kvscamd/kvscamd/internal/kvs"
	"github.com/kvscamd/kvscamd/internal/kvscontrol"
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
	info, err := c.client.DescribeStream(cctx, name)
	switch {
	case isNotFound(err) && cfg.CreateStream:
		return fmt.Sprintf("kvs: ok stream %s does not exist yet; kvscamd run creates it (kvs.create_stream = true)", name), nil
	case isNotFound(err):
		return failf("does not exist in %s; create it (aws kinesisvideo create-stream --stream-name %s --media-type video/h264 --data-retention-in-hours 24) or set kvs.create_stream = true", cfg.Region, name)
	case err != nil:
		return failf("%v", c.fail("DescribeStream", err))
	}
	if info.Status != kvscontrol.StatusActive {
		return failf("status %s; it must be ACTIVE to take data", info.Status)
	}
	ep, err := c.dataEndpoint(cctx, time.Now())
	if err != nil {
		return failf("%v", err)
	}
	ret := "no retention (fragments are acknowledged when received, and not kept)"
	if h := info.DataRetentionInHours; h > 0 {
		ret = fmt.Sprintf("retention %dh", h)
	}
	return fmt.Sprintf("kvs: ok stream %s ACTIVE, %s, PutMedia endpoint %s", name, ret, ep), nil
}
