// Package drivers holds the frame sources of kvscamd: the camera (V4L2), a
// replayed Annex-B file and the stdout of a child process. Every source
// delivers H.264 access units as media.Frame values and never waits for the rest
// of the pipeline: when the consumer falls behind, frames are dropped and
// counted, because a stalled capture loop loses far more than one frame.
package drivers

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/media"
)

// Source is a frame source. Run captures until ctx is cancelled (which is
// a normal stop and returns nil) or the source fails for good; frames are
// offered to out without blocking.
type Source interface {
	Run(ctx context.Context, out chan<- media.Frame) error
	// RequestKeyFrame asks the encoder for an IDR picture as soon as it can.
	// Sources that cannot do that ignore the request.
	RequestKeyFrame()
	// Describe names the source for logs and status, e.g. "v4l2 /dev/video0".
	Describe() string
	// Stats returns the source's counters; safe to call at any time.
	Stats() Stats
}

// Stats are the counters every source keeps.
type Stats struct {
	Frames  uint64 // frames delivered to the receiver
	Dropped uint64 // frames dropped because the receiver was not ready
	Bytes   uint64 // access-unit bytes delivered
	Errors  uint64 // capture errors recovered from (device lost, child died)
}

// Counters is an embeddable, concurrency-safe implementation of the Stats
// bookkeeping and of the non-blocking hand-off every driver needs.
type Counters struct {
	frames, dropped, bytes, errors atomic.Uint64
}

// Offer sends f to out if the receiver is ready and drops it otherwise,
// counting either outcome; a dropped frame's pooled memory goes back. It
// reports whether the frame was delivered.
func (c *Counters) Offer(out chan<- media.Frame, f media.Frame) bool {
	select {
	case out <- f:
		c.Delivered(f)
		return true
	default:
		c.dropped.Add(1)
		f.Release()
		return false
	}
}

// Delivered counts a frame handed over by other means than Offer, such as
// a blocking send from a source that may wait.
func (c *Counters) Delivered(f media.Frame) {
	c.frames.Add(1)
	n := 0
	for _, nalu := range f.NALUs {
		n += len(nalu)
	}
	c.bytes.Add(uint64(n))
}

// CountError records a recovered capture error.
func (c *Counters) CountError() { c.errors.Add(1) }

// Stats returns a snapshot of the counters.
func (c *Counters) Stats() Stats {
	return Stats{
		Frames:  c.frames.Load(),
		Dropped: c.dropped.Load(),
		Bytes:   c.bytes.Load(),
		Errors:  c.errors.Load(),
	}
}

// WakeInterval is how often a paced source wakes to hand over the frames
// that came due since it last woke. Waking once per frame costs more in
// scheduler, timer and thread wake-ups than all the work done on the
// frames (a third of the daemon's CPU time at 30 fps); a tenth of a second
// delays video whose fragments last seconds by at most that much, and the
// frames keep their own timestamps.
const WakeInterval = 100 * time.Millisecond

// MaxBatchFrames bounds the frames one wake hands over, so that a batch
// fits the queue to the fragmenter with room to spare at any frame rate.
const MaxBatchFrames = 8

// BatchFrames returns how many frames a source at fps hands over per wake
// for a configured wake interval (zero: WakeInterval; negative: one wake
// per frame): the frames that fit in the interval, at least one and at
// most MaxBatchFrames.
func BatchFrames(configured time.Duration, fps int) int {
	if configured < 0 || fps <= 0 {
		return 1
	}
	if configured == 0 {
		configured = WakeInterval
	}
	n := int(configured * time.Duration(fps) / time.Second)
	return min(max(n, 1), MaxBatchFrames)
}

// HealthyRun is how long a source must have captured for its next failure
// to count as a fresh one: its restart back-off starts over from the
// minimum, so a camera that fails once a day comes back quickly.
const HealthyRun = time.Minute
