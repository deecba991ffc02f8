//go:build linux && cgo

package v4l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vladimirvivien/go4vl/v4l2"
	"golang.org/x/sys/unix"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/h264"
)

// maxListedFormats bounds the format list in the no-H.264 error; vivid
// alone offers 83.
const maxListedFormats = 12

// Buffer timestamp flags (linux/videodev2.h).
const (
	bufFlagTimestampMask      = 0xe000
	bufFlagTimestampUnknown   = 0x0000
	bufFlagTimestampMonotonic = 0x2000
)

// Source captures from one V4L2 device; create it with New.
type Source struct {
	cfg      Config
	log      *slog.Logger
	mapper   *clock.Mapper
	errs     drivers.Counters // only its error count is used
	gapDrops atomic.Uint64
	keyReq   atomic.Bool
	seq      uint64
	// lastData is the last buffer turned into a frame (shared, read-only,
	// with that frame), kept across reopens to recognise a replay.
	lastData []byte
	running  sync.Mutex // one Run at a time
}

// New validates cfg and returns the source. The device is opened by Run.
func New(cfg Config) (drivers.Source, error) {
	return newSource(cfg)
}

func newSource(cfg Config) (*Source, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg}
	s.log = cfg.Log.With("source", s.Describe())
	s.mapper = clock.NewMapper(clock.MapperConfig{Clock: cfg.Clock, MaxHoldBytes: cfg.MaxHoldBytes, Log: s.log})
	return s, nil
}

// Describe implements drivers.Source.
func (s *Source) Describe() string { return "v4l2 " + s.cfg.Device }

// RequestKeyFrame implements drivers.Source: the capture loop sets the
// force-key-frame control at its next turn, if the device has it.
func (s *Source) RequestKeyFrame() { s.keyReq.Store(true) }

// Stats implements drivers.Source.
func (s *Source) Stats() drivers.Stats { return sourceStats(s.mapper, &s.errs, s.gapDrops.Load()) }

// Run implements drivers.Source. It returns an error only for a device that
// can never work (no H.264, not a capture device); a device that is absent
// or fails is reopened with back-off until ctx ends.
func (s *Source) Run(ctx context.Context, out chan<- drivers.Frame) error {
	if !s.running.TryLock() {
		return fmt.Errorf("%s: Run is already active", s.Describe())
	}
	defer s.running.Unlock()
	s.seq, s.lastData = 0, nil

	// The Mapper delivers from its own goroutine so that a slow receiver
	// never keeps buffers from being re-queued.
	mctx, stopMapper := context.WithCancel(ctx)
	mapperDone := make(chan struct{})
	go func() {
		defer close(mapperDone)
		s.mapper.Run(mctx, out) //nolint:errcheck // returns nil on cancel
	}()
	defer func() {
		stopMapper()
		<-mapperDone
	}()

	backoff := s.cfg.MinBackoff
	for {
		started := time.Now()
		err := s.capture(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		s.errs.CountError()
		if time.Since(started) >= healthyRun {
			backoff = s.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("capture interrupted; reopening the device", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// fatalError marks errors that reopening cannot fix.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// device adapts an open file descriptor to go4vl's StreamingDevice, which
// its buffer helpers (REQBUFS, mmap, STREAMON) take. Only the methods those
// helpers call do anything.
type device struct {
	path  string
	fd    uintptr
	count uint32
	bufs  [][]byte
}

func (d *device) Name() string                { return d.path }
func (d *device) Fd() uintptr                 { return d.fd }
func (d *device) Capability() v4l2.Capability { return v4l2.Capability{} }
func (d *device) MemIOType() v4l2.IOType      { return v4l2.IOTypeMMAP }
func (d *device) GetOutput() <-chan []byte    { return nil }
func (d *device) SetInput(<-chan []byte)      {}
func (d *device) Close() error                { return nil }
func (d *device) Buffers() [][]byte           { return d.bufs }
func (d *device) BufferType() v4l2.BufType    { return v4l2.BufTypeVideoCapture }
func (d *device) BufferCount() uint32         { return d.count }
func (d *device) Start(context.Context) error { return nil }
func (d *device) Stop() error                 { return nil }

// fourcc renders a pixel format code as its four characters.
func fourcc(f uint32) string {
	b := []byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)}
	return strings.TrimRight(string(b), " \x00")
}

// capture opens the device, streams until an error or ctx ends, and
// releases everything it set up. Panics in the ioctl layer are turned into
// errors so that one bad buffer cannot take the daemon down.
func (s *Source) capture(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("v4l2 %s: panic during capture: %v", s.cfg.Device, r)
		}
	}()
	path := s.cfg.Device
	fd, err := v4l2.OpenDevice(path, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("v4l2 %s: open: %w", path, err)
	}
	defer v4l2.CloseDevice(fd) //nolint:errcheck // nothing left to save

	caps, err := v4l2.GetCapability(fd)
	if errors.Is(err, v4l2.ErrorUnsupported) || errors.Is(err, unix.ENOSYS) {
		// ENOTTY from a file that is not a V4L2 node; ENOSYS where the
		// ioctl cannot even be passed on (qemu-user).
		return &fatalError{fmt.Errorf("v4l2 %s: not a V4L2 device (VIDIOC_QUERYCAP: %v); set device to the camera's /dev/videoN node", path, err)}
	}
	if err != nil {
		return fmt.Errorf("v4l2 %s: query capabilities: %w", path, err)
	}
	if !caps.IsVideoCaptureSupported() || !caps.IsStreamingSupported() {
		return &fatalError{fmt.Errorf("v4l2 %s (%s, driver %s): not a single-planar streaming capture device (capabilities %#x); pick the camera's capture node (v4l2-ctl --list-devices)",
			path, caps.Card, caps.Driver, caps.GetCapabilities())}
	}
	if err := s.negotiate(fd, caps); err != nil {
		return err
	}
	s.applyControls(fd)

	dev := &device{path: path, fd: fd, count: uint32(s.cfg.Buffers)}
	req, err := v4l2.InitBuffers(dev)
	if err != nil {
		return fmt.Errorf("v4l2 %s: request buffers: %w", path, err)
	}
	if req.Count == 0 {
		return fmt.Errorf("v4l2 %s: driver granted no buffers", path)
	}
	dev.count = req.Count
	dev.bufs, err = v4l2.MapMemoryBuffers(dev)
	if err != nil {
		return fmt.Errorf("v4l2 %s: mmap buffers: %w", path, err)
	}
	defer func() {
		for _, b := range dev.bufs {
			if b != nil {
				unix.Munmap(b) //nolint:errcheck
			}
		}
	}()
	for i := range dev.count {
		if _, err := v4l2.QueueBuffer(fd, v4l2.IOTypeMMAP, v4l2.BufTypeVideoCapture, i); err != nil {
			return fmt.Errorf("v4l2 %s: queue buffer %d: %w", path, i, err)
		}
	}
	if err := v4l2.StreamOn(dev); err != nil {
		return fmt.Errorf("v4l2 %s: %w", path, err)
	}
	// STREAMOFF before the deferred munmap: the driver must stop writing
	// into the buffers before they leave our address space.
	defer v4l2.StreamOff(dev) //nolint:errcheck // the device may be gone
	s.log.Info("capturing", "driver", caps.Driver, "card", caps.Card, "buffers", dev.count)
	return s.stream(ctx, dev)
}

// negotiate selects H.264 at the configured size and rate.
func (s *Source) negotiate(fd uintptr, caps v4l2.Capability) error {
	path := s.cfg.Device
	descs, err := v4l2.GetAllFormatDescriptions(fd)
	if err != nil || len(descs) == 0 {
		// v4l2loopback lists nothing until its producer has set a
		// format; a camera still initialising may behave alike.
		return fmt.Errorf("v4l2 %s: device lists no formats yet: %v", path, err)
	}
	var offered []string
	hasH264 := false
	for _, d := range descs {
		if d.PixelFormat == 0 {
			// Seen from v4l2loopback while its producer is still
			// setting up; a real list never holds a zero code.
			return fmt.Errorf("v4l2 %s: device lists an empty format code; not ready yet", path)
		}
		if d.PixelFormat == v4l2.PixelFmtH264 {
			hasH264 = true
		}
		if len(offered) < maxListedFormats {
			offered = append(offered, fmt.Sprintf("%s (%s)", fourcc(d.PixelFormat), d.Description))
		}
	}
	if n := len(descs) - len(offered); n > 0 {
		offered = append(offered, fmt.Sprintf("and %d more (v4l2-ctl -d %s --list-formats)", n, path))
	}
	if !hasH264 {
		return &fatalError{fmt.Errorf("v4l2 %s (%s, driver %s): %w; it offers %s. Use a camera with an H.264 encoder, or driver = \"exec\" with an encoder command",
			path, caps.Card, caps.Driver, ErrNoH264, strings.Join(offered, ", "))}
	}
	want := v4l2.PixFormat{
		Width: uint32(s.cfg.Width), Height: uint32(s.cfg.Height),
		PixelFormat: v4l2.PixelFmtH264, Field: v4l2.FieldNone,
	}
	if err := v4l2.SetPixFormat(fd, want); err != nil {
		// Some devices (v4l2loopback with an active producer) refuse
		// format changes; their current format may still be H.264.
		s.log.Warn("device refused the format; using its current one", "err", err)
	}
	got, err := v4l2.GetPixFormat(fd)
	if err != nil {
		return fmt.Errorf("v4l2 %s: read format: %w", path, err)
	}
	if got.PixelFormat != v4l2.PixelFmtH264 {
		return fmt.Errorf("v4l2 %s: format is %s after asking for H264", path, fourcc(got.PixelFormat))
	}
	if got.Width != want.Width || got.Height != want.Height {
		s.log.Warn("device chose another picture size", "want", fmt.Sprintf("%dx%d", want.Width, want.Height),
			"got", fmt.Sprintf("%dx%d", got.Width, got.Height))
	}
	parm, err := v4l2.GetStreamParam(fd, v4l2.BufTypeVideoCapture)
	if err != nil || parm.Capture.Capability&v4l2.StreamParamTimePerFrame == 0 {
		s.log.Info("device does not take a frame rate; it runs at its own", "fps_wanted", s.cfg.FPS)
		return nil
	}
	parm.Capture.TimePerFrame = v4l2.Fract{Numerator: 1, Denominator: uint32(s.cfg.FPS)}
	if err := v4l2.SetStreamParam(fd, v4l2.BufTypeVideoCapture, parm); err != nil {
		s.log.Warn("device refused the frame rate", "fps", s.cfg.FPS, "err", err)
	}
	return nil
}

// applyControls sets the encoder controls the device has and logs the ones
// it lacks (a UVC camera usually has none of them).
func (s *Source) applyControls(fd uintptr) {
	type ctrl struct {
		name string
		id   uint32
		val  int32
	}
	var ctrls []ctrl
	if s.cfg.Bitrate > 0 {
		ctrls = append(ctrls, ctrl{"bitrate", cidBitrate, int32(min(s.cfg.Bitrate, 1<<31-1))})
	}
	if s.cfg.KeyframeInterval > 0 {
		g := s.cfg.gopFrames()
		ctrls = append(ctrls, ctrl{"gop_size", cidGOPSize, g}, ctrl{"h264_i_period", cidH264IPeriod, g})
	}
	ctrls = append(ctrls, ctrl{"repeat_sequence_header", cidRepeatSeqHeader, 1}, ctrl{"header_mode_joined", cidHeaderMode, 1})
	if s.cfg.Profile != "" {
		ctrls = append(ctrls, ctrl{"h264_profile", cidH264Profile, profiles[s.cfg.Profile]})
	}
	var lacking, set []string
	for _, c := range ctrls {
		if _, err := v4l2.QueryControlInfo(fd, c.id); err != nil {
			lacking = append(lacking, c.name)
			continue
		}
		if err := v4l2.SetControlValue(fd, c.id, c.val); err != nil {
			s.log.Warn("setting encoder control failed", "control", c.name, "value", c.val, "err", err)
			continue
		}
		set = append(set, fmt.Sprintf("%s=%d", c.name, c.val))
	}
	if len(set) > 0 {
		s.log.Info("encoder controls set", "controls", strings.Join(set, " "))
	}
	if len(lacking) > 0 {
		s.log.Info("device lacks encoder controls; it keeps its own settings", "controls", strings.Join(lacking, " "))
	}
}

// stream dequeues buffers until an error, a stall, or ctx ends.
func (s *Source) stream(ctx context.Context, dev *device) error {
	path := s.cfg.Device
	var asm assembler
	first := true
	var lastSeq uint32
	lastFrame := time.Now()
	keyUnsupported := false
	pfd := []unix.PollFd{{Fd: int32(dev.fd), Events: unix.POLLIN}}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if s.keyReq.Swap(false) && !keyUnsupported {
			if err := v4l2.SetControlValue(dev.fd, cidForceKeyFrame, 0); err != nil {
				// Logged once per open: the fragmenter may ask often.
				keyUnsupported = true
				s.log.Info("device cannot force a key frame; requests are ignored until it is reopened", "err", err)
			}
		}
		pfd[0].Revents = 0
		n, err := unix.Poll(pfd, int(pollInterval/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("v4l2 %s: poll: %w", path, err)
		}
		if n == 0 || err != nil {
			if time.Since(lastFrame) > s.cfg.StallTimeout {
				return fmt.Errorf("v4l2 %s: no frame for %v", path, s.cfg.StallTimeout)
			}
			continue
		}
		if pfd[0].Revents&unix.POLLNVAL != 0 {
			return fmt.Errorf("v4l2 %s: device descriptor invalid", path)
		}
		buf, err := v4l2.DequeueBuffer(dev.fd, v4l2.IOTypeMMAP, v4l2.BufTypeVideoCapture)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
					return fmt.Errorf("v4l2 %s: device reports an error (unplugged?)", path)
				}
				continue
			}
			return fmt.Errorf("v4l2 %s: dequeue: %w", path, err)
		}
		if buf.Index >= dev.count {
			return fmt.Errorf("v4l2 %s: driver returned buffer %d of %d", path, buf.Index, dev.count)
		}
		lastFrame = time.Now()
		s.handle(&asm, dev, buf, &first, &lastSeq)
		if _, err := v4l2.QueueBuffer(dev.fd, v4l2.IOTypeMMAP, v4l2.BufTypeVideoCapture, buf.Index); err != nil {
			return fmt.Errorf("v4l2 %s: re-queue buffer %d: %w", path, buf.Index, err)
		}
	}
}

// handle turns one dequeued buffer into a frame for the Mapper.
func (s *Source) handle(asm *assembler, dev *device, buf v4l2.Buffer, first *bool, lastSeq *uint32) {
	reopened := *first
	if !*first {
		if gap := buf.Sequence - *lastSeq - 1; gap > 0 && gap < 1<<31 {
			s.gapDrops.Add(uint64(gap))
			s.seq += uint64(gap)
			s.log.Debug("driver skipped frames", "count", gap)
		}
	}
	*first, *lastSeq = false, buf.Sequence
	if buf.Flags&v4l2.BufFlagError != 0 || buf.BytesUsed == 0 {
		s.gapDrops.Add(1)
		s.seq++
		return
	}
	mapped := dev.bufs[buf.Index]
	if int(buf.BytesUsed) > len(mapped) {
		s.gapDrops.Add(1)
		s.seq++
		return
	}
	// Copy out of the mmap buffer: it goes back to the driver right away,
	// and Frame's NAL units must belong to the receiver.
	data := make([]byte, buf.BytesUsed)
	copy(data, mapped[:buf.BytesUsed])
	if reopened && len(s.lastData) > 0 && bytes.HasPrefix(data, s.lastData) {
		// The buffer delivered last, handed out again after a reopen:
		// v4l2loopback 0.12 repeats its newest buffer to a new reader,
		// with a stale bytesused that appends garbage. An encoder never
		// emits a picture that begins with the whole previous one
		// (frame_num differs).
		s.log.Debug("dropping a frame already delivered", "seq", buf.Sequence)
		return
	}
	s.lastData = data
	nalus, err := asm.add(data)
	if err != nil {
		s.log.Warn("buffer is not H.264 Annex-B; dropped", "err", err, "bytes", buf.BytesUsed)
		s.gapDrops.Add(1)
		s.seq++
		return
	}
	if nalus == nil {
		return // parameter sets only; they join the next picture
	}
	mono := s.cfg.Clock.Mono()
	ts := time.Duration(buf.Timestamp.Sec)*time.Second + time.Duration(buf.Timestamp.Usec)*time.Microsecond
	// Drivers stamp buffers on CLOCK_MONOTONIC; some (v4l2loopback) do
	// so without setting the flag that says it, so an unflagged
	// timestamp is taken when it is plausible: not in the future and not
	// older than the stall timeout.
	switch tsType := buf.Flags & bufFlagTimestampMask; {
	case ts <= 0 || ts > mono+time.Millisecond:
	case tsType == bufFlagTimestampMonotonic:
		mono = ts
	case tsType == bufFlagTimestampUnknown && mono-ts < s.cfg.StallTimeout:
		mono = ts
	}
	s.mapper.Push(drivers.Frame{NALUs: nalus, Mono: mono, Key: h264.IsIDR(nalus), Seq: s.seq})
	s.seq++
}
