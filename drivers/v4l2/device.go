//go:build linux && cgo

package v4l2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vladimirvivien/go4vl/v4l2"
	"golang.org/x/sys/unix"

	"github.com/kvscamd/kvscamd/drivers"
)

// maxListedFormats bounds the format list in the no-H.264 error; vivid
// alone offers 83.
const maxListedFormats = 12

// New validates cfg and returns the source. The device is opened by Run.
func New(cfg Config) (drivers.Source, error) {
	return newSource(cfg, openDevice)
}

// device adapts an open file descriptor to go4vl's StreamingDevice, which
// its buffer helpers (REQBUFS, mmap, STREAMON) take. Only the methods those
// helpers call do anything.
type device struct {
	path      string
	fd        uintptr
	count     uint32
	bufs      [][]byte
	streaming bool
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

// devSession is a streaming device: its descriptor, the mapped buffers,
// and the poll set used to wait for them.
type devSession struct {
	dev *device
	pfd []unix.PollFd
}

func (d *devSession) next(timeout time.Duration) (buffer, bool, error) {
	d.pfd[0].Revents = 0
	n, err := unix.Poll(d.pfd, int(timeout/time.Millisecond))
	if errors.Is(err, unix.EINTR) || (err == nil && n == 0) {
		return buffer{}, false, nil
	}
	if err != nil {
		return buffer{}, false, fmt.Errorf("poll: %w", err)
	}
	if d.pfd[0].Revents&unix.POLLNVAL != 0 {
		return buffer{}, false, errors.New("device descriptor invalid")
	}
	b, err := v4l2.DequeueBuffer(d.dev.fd, v4l2.IOTypeMMAP, v4l2.BufTypeVideoCapture)
	if errors.Is(err, unix.EAGAIN) {
		if d.pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return buffer{}, false, errors.New("device reports an error (unplugged?)")
		}
		return buffer{}, false, nil
	}
	if err != nil {
		return buffer{}, false, fmt.Errorf("dequeue: %w", err)
	}
	if b.Index >= d.dev.count {
		return buffer{}, false, fmt.Errorf("driver returned buffer %d of %d", b.Index, d.dev.count)
	}
	mapped := d.dev.bufs[b.Index]
	used := min(int(b.BytesUsed), len(mapped))
	return buffer{
		index: b.Index,
		data:  mapped[:used],
		flags: b.Flags,
		seq:   b.Sequence,
		ts:    time.Duration(b.Timestamp.Sec)*time.Second + time.Duration(b.Timestamp.Usec)*time.Microsecond,
	}, true, nil
}

func (d *devSession) release(b buffer) error {
	_, err := v4l2.QueueBuffer(d.dev.fd, v4l2.IOTypeMMAP, v4l2.BufTypeVideoCapture, b.index)
	return err
}

func (d *devSession) forceKeyFrame() error {
	return v4l2.SetControlValue(d.dev.fd, cidForceKeyFrame, 0)
}

// close stops streaming before unmapping: the driver must stop writing
// into the buffers before they leave our address space.
func (d *devSession) close() {
	if d.dev.streaming {
		v4l2.StreamOff(d.dev) //nolint:errcheck // the device may be gone
	}
	for _, b := range d.dev.bufs {
		if b != nil {
			unix.Munmap(b) //nolint:errcheck
		}
	}
	v4l2.CloseDevice(d.dev.fd) //nolint:errcheck // nothing left to save
}

// openDevice opens the device, negotiates H.264, sets the encoder
// controls, maps the buffers and starts streaming.
func openDevice(s *Source) (sess session, err error) {
	path := s.cfg.Device
	fd, err := v4l2.OpenDevice(path, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("v4l2 %s: open: %w", path, err)
	}
	d := &devSession{dev: &device{path: path, fd: fd, count: uint32(s.cfg.Buffers)}}
	defer func() {
		if sess == nil {
			d.close()
		}
	}()

	caps, err := v4l2.GetCapability(fd)
	if errors.Is(err, v4l2.ErrorUnsupported) || errors.Is(err, unix.ENOSYS) {
		// ENOTTY from a file that is not a V4L2 node; ENOSYS where the
		// ioctl cannot even be passed on (qemu-user).
		return nil, &fatalError{fmt.Errorf("v4l2 %s: not a V4L2 device (VIDIOC_QUERYCAP: %v); set device to the camera's /dev/videoN node", path, err)}
	}
	if err != nil {
		return nil, fmt.Errorf("v4l2 %s: query capabilities: %w", path, err)
	}
	if !caps.IsVideoCaptureSupported() || !caps.IsStreamingSupported() {
		return nil, &fatalError{fmt.Errorf("v4l2 %s (%s, driver %s): not a single-planar streaming capture device (capabilities %#x); pick the camera's capture node (v4l2-ctl --list-devices)",
			path, caps.Card, caps.Driver, caps.GetCapabilities())}
	}
	if err := s.negotiate(fd, caps); err != nil {
		return nil, err
	}
	s.applyControls(fd)

	req, err := v4l2.InitBuffers(d.dev)
	if err != nil {
		return nil, fmt.Errorf("v4l2 %s: request buffers: %w", path, err)
	}
	if req.Count == 0 {
		return nil, fmt.Errorf("v4l2 %s: driver granted no buffers", path)
	}
	d.dev.count = req.Count
	if d.dev.bufs, err = v4l2.MapMemoryBuffers(d.dev); err != nil {
		return nil, fmt.Errorf("v4l2 %s: mmap buffers: %w", path, err)
	}
	for i := range d.dev.count {
		if _, err := v4l2.QueueBuffer(fd, v4l2.IOTypeMMAP, v4l2.BufTypeVideoCapture, i); err != nil {
			return nil, fmt.Errorf("v4l2 %s: queue buffer %d: %w", path, i, err)
		}
	}
	if err := v4l2.StreamOn(d.dev); err != nil {
		return nil, fmt.Errorf("v4l2 %s: %w", path, err)
	}
	d.dev.streaming = true
	d.pfd = []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	s.log.Info("capturing", "driver", caps.Driver, "card", caps.Card, "buffers", d.dev.count)
	return d, nil
}

// Probe opens the device node without streaming and reports what it is
// and whether it offers H.264, for `kvscamd check`. It does not change the
// device's format, so it can run beside a capturing daemon.
func Probe(path string) (Info, error) {
	fd, err := v4l2.OpenDevice(path, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return Info{}, fmt.Errorf("v4l2 %s: open: %w", path, err)
	}
	defer v4l2.CloseDevice(fd) //nolint:errcheck // read-only use
	caps, err := v4l2.GetCapability(fd)
	if err != nil {
		return Info{}, fmt.Errorf("v4l2 %s: not a V4L2 device (VIDIOC_QUERYCAP: %v); set device to the camera's /dev/videoN node", path, err)
	}
	info := Info{Driver: caps.Driver, Card: caps.Card, Capture: caps.IsVideoCaptureSupported() && caps.IsStreamingSupported()}
	descs, err := v4l2.GetAllFormatDescriptions(fd)
	if err != nil {
		return info, fmt.Errorf("v4l2 %s: list formats: %w", path, err)
	}
	for _, d := range descs {
		info.Formats = append(info.Formats, fourcc(d.PixelFormat))
		if d.PixelFormat == v4l2.PixelFmtH264 {
			info.H264 = true
		}
	}
	return info, nil
}

// fourcc renders a pixel format code as its four characters.
func fourcc(f uint32) string {
	b := []byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)}
	return strings.TrimRight(string(b), " \x00")
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
