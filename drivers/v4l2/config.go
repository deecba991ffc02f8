// Package v4l2 is the camera frame source: it captures H.264 from a Video4Linux2
// device (a UVC camera with an on-board encoder, the Raspberry Pi's legacy
// camera stack, a loopback device) through memory-mapped streaming.
//
// The ioctl layer is this package's own, on golang.org/x/sys/unix, with
// the kernel's structs and request numbers in uapi: the driver needs no
// cgo, and the daemon links statically for every target. On systems other
// than Linux, New returns ErrUnavailable. Run's goroutine polls, dequeues
// and re-queues the buffers itself, so every error (a camera unplugged
// mid-frame included) comes back as a value, is logged and counted, and
// capture resumes after the device reappears.
//
// Frames are timestamped from the buffer (CLOCK_MONOTONIC, as V4L2 drivers
// stamp them) and mapped to wall time by a clock.Mapper. Key frames are
// found from the NAL unit types, since drivers do not reliably set
// V4L2_BUF_FLAG_KEYFRAME. Gaps in the buffer sequence numbers are counted
// as dropped frames and show up as gaps in Frame.Seq.
package v4l2

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/drivers/v4l2/uapi"
	"github.com/kvscamd/kvscamd/h264"
)

// Defaults of Config fields.
const (
	DefaultBuffers      = 4
	DefaultMinBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultStallTimeout = 10 * time.Second
	// pollInterval bounds how long the capture loop waits in poll(2)
	// before looking at its context and at key-frame requests.
	pollInterval = 100 * time.Millisecond
	// maxBuffers caps the mmap buffers requested.
	maxBuffers = 32
)

// profiles maps the profile setting to V4L2_CID_MPEG_VIDEO_H264_PROFILE's
// menu values.
var profiles = map[string]int32{
	"baseline":             uapi.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE,
	"constrained_baseline": uapi.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE,
	"main":                 uapi.V4L2_MPEG_VIDEO_H264_PROFILE_MAIN,
	"high":                 uapi.V4L2_MPEG_VIDEO_H264_PROFILE_HIGH,
}

// ErrNoH264 is returned (wrapped, with the formats the device offers) when
// a device cannot deliver H.264.
var ErrNoH264 = errors.New("device does not offer H.264")

// Config configures the V4L2 source.
type Config struct {
	Device string // e.g. /dev/video0
	Width  int
	Height int
	FPS    int
	// Bitrate in bits/s; 0 leaves the encoder's setting.
	Bitrate int
	// KeyframeInterval is the time between IDR pictures; the GOP size in
	// frames is KeyframeInterval × FPS. 0 leaves the encoder's setting.
	KeyframeInterval time.Duration
	// Profile is "baseline", "constrained_baseline", "main", "high" or ""
	// (leave the encoder's setting).
	Profile string
	// Buffers is the number of mmap buffers; 0 means DefaultBuffers.
	Buffers int
	// WakeInterval is how often capture wakes to take the frames the
	// driver filled meanwhile: zero means drivers.WakeInterval, negative
	// once per frame. It is shortened to leave two buffers free (see
	// batchInterval).
	WakeInterval time.Duration
	Clock        clock.Clock // nil: system clock, clock_sync "wait"
	Log          *slog.Logger
	// MaxHoldBytes caps the frames held while the clock is unsynchronised
	// or the receiver is slow; 0 means clock.DefaultMaxHoldBytes.
	MaxHoldBytes int
	// MinBackoff and MaxBackoff bound the wait before reopening a device
	// that failed. StallTimeout is how long a streaming device may
	// deliver nothing before it is reopened.
	MinBackoff, MaxBackoff, StallTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.Device == "" {
		return errors.New(`v4l2: device is empty: set device = "/dev/video0"`)
	}
	if c.Width <= 0 || c.Height <= 0 || c.FPS <= 0 {
		return fmt.Errorf("v4l2 %s: width, height and fps must be positive (got %dx%d at %d fps)", c.Device, c.Width, c.Height, c.FPS)
	}
	if c.Bitrate < 0 || c.KeyframeInterval < 0 {
		return fmt.Errorf("v4l2 %s: bitrate and keyframe_interval must not be negative", c.Device)
	}
	if _, ok := profiles[c.Profile]; c.Profile != "" && !ok {
		return fmt.Errorf("v4l2 %s: profile %q: want baseline, constrained_baseline, main or high", c.Device, c.Profile)
	}
	if c.Buffers <= 0 {
		c.Buffers = DefaultBuffers
	}
	c.Buffers = min(c.Buffers, maxBuffers)
	if c.Clock == nil {
		c.Clock = clock.System{Mode: clock.SyncWait}
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	return nil
}

// batchInterval is how long capture sleeps per batch of frames, or zero
// for a wake per frame. While it sleeps the driver fills queued buffers;
// two stay free beyond the batch (one being filled, one spare), so a late
// wake does not make the driver drop a frame.
func (c *Config) batchInterval() time.Duration {
	n := min(drivers.BatchFrames(c.WakeInterval, c.FPS), c.Buffers-2)
	if n <= 1 {
		return 0
	}
	return time.Duration(n) * time.Second / time.Duration(c.FPS)
}

// gopFrames is the key-frame interval in frames, at least 1.
func (c *Config) gopFrames() int32 {
	n := math.Round(c.KeyframeInterval.Seconds() * float64(c.FPS))
	return int32(max(1, min(n, math.MaxInt32)))
}

// assembler turns dequeued buffers into access units. Encoders in
// "separate header" mode deliver SPS/PPS in a buffer of their own; those
// NAL units are carried over into the next picture's access unit so that
// every Frame holds a picture.
type assembler struct {
	pending [][]byte
}

// add takes one buffer's bytes (Annex-B, owned by the assembler from now
// on) and returns the access unit's NAL units, or nil if the buffer held
// no picture yet.
func (a *assembler) add(b []byte) ([][]byte, error) { return a.addTo(b, nil) }

// addTo is add with the NAL unit slices appended to dst (a pooled frame's),
// so that a picture needs no slice allocation.
func (a *assembler) addTo(b []byte, dst [][]byte) ([][]byte, error) {
	nalus, err := h264.SplitAnnexB(b, append(dst, a.pending...))
	if err != nil {
		a.pending = nil
		return nil, err
	}
	for _, n := range nalus {
		if h264.Type(n).IsVCL() {
			a.pending = nil
			return nalus, nil
		}
	}
	if len(nalus) > h264.MaxNALUsPerAccessUnit {
		a.pending = nil
		return nil, fmt.Errorf("%w: %d NAL units without a picture", h264.ErrTooLarge, len(nalus))
	}
	a.pending = nalus
	return nil, nil
}

// sourceStats combines the Mapper's delivery counts with the driver's
// errors and sequence-gap drops.
func sourceStats(m *clock.Mapper, errs *drivers.Counters, gapDrops uint64) drivers.Stats {
	st := m.Stats()
	st.Errors = errs.Stats().Errors
	st.Dropped += gapDrops
	return st
}
