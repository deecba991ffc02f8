//go:build linux

package v4l2

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/v4l2/uapi"
)

const (
	// maxListedFormats bounds the format list in the no-H.264 error;
	// vivid alone offers 83.
	maxListedFormats = 12
	// maxEnumFormats bounds the VIDIOC_ENUM_FMT walk, should a driver
	// never end its list; real devices list well under a hundred.
	maxEnumFormats = 1024
	// bufMapProt maps buffers read-write, as the kernel's V4L2
	// streaming example does; capture itself only reads them.
	bufMapProt = unix.PROT_READ | unix.PROT_WRITE
)

// New validates cfg and returns the source. The device is opened by Run.
func New(cfg Config) (drivers.Source, error) {
	return newSource(cfg, openDevice)
}

// ioctl issues one V4L2 request on fd, again when a signal interrupts
// it. arg points at the request's struct; the conversion to uintptr sits
// in the system call's argument list, which keeps the struct alive and in
// place until the kernel is done with it.
func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
		default:
			return errno
		}
	}
}

// openNode opens a device node for streaming: non-blocking, so that DQBUF
// answers EAGAIN instead of waiting (poll does the waiting), and not
// inherited by the encoder commands the exec driver starts.
func openNode(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// devSession is one open, streaming device. It owns the descriptor and the
// mapped buffers: only close unmaps them, after STREAMOFF, and then closes
// the descriptor. A buffer's memory is read only between the DQBUF that
// hands it out and the QBUF that gives it back (release).
type devSession struct {
	fd        int
	bufs      [][]byte // bufs[i] is the mapping of the driver's buffer i
	streaming bool
	pfd       []unix.PollFd
	// dq and q are the structs of every DQBUF and QBUF, kept here so
	// that a frame costs no allocation.
	dq, q uapi.Buffer
}

// next implements session. A zero timeout only dequeues what is ready,
// without polling: the capture loop drains a batch that way.
func (d *devSession) next(timeout time.Duration) (buffer, bool, error) {
	d.pfd[0].Revents = 0
	if timeout > 0 {
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
	}
	d.dq = uapi.Buffer{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE, Memory: uapi.V4L2_MEMORY_MMAP}
	err := ioctl(d.fd, uapi.VIDIOC_DQBUF, unsafe.Pointer(&d.dq))
	if errors.Is(err, unix.EAGAIN) {
		if d.pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return buffer{}, false, errors.New("device reports an error (unplugged?)")
		}
		return buffer{}, false, nil
	}
	if err != nil {
		return buffer{}, false, fmt.Errorf("VIDIOC_DQBUF: %w", err)
	}
	b := &d.dq
	if int(b.Index) >= len(d.bufs) {
		return buffer{}, false, fmt.Errorf("driver returned buffer %d of %d", b.Index, len(d.bufs))
	}
	mapped := d.bufs[b.Index]
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
	return d.queue(b.index)
}

// queue hands buffer i to the driver to fill.
func (d *devSession) queue(i uint32) error {
	d.q = uapi.Buffer{Index: i, Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE, Memory: uapi.V4L2_MEMORY_MMAP}
	if err := ioctl(d.fd, uapi.VIDIOC_QBUF, unsafe.Pointer(&d.q)); err != nil {
		return fmt.Errorf("VIDIOC_QBUF: %w", err)
	}
	return nil
}

func (d *devSession) forceKeyFrame() error {
	q, err := queryControl(d.fd, uapi.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME)
	if err != nil {
		return err
	}
	return setControl(d.fd, &q, 0)
}

// close stops streaming before unmapping: the driver must stop writing
// into the buffers before they leave our address space.
func (d *devSession) close() {
	if d.streaming {
		typ := int32(uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE)
		ioctl(d.fd, uapi.VIDIOC_STREAMOFF, unsafe.Pointer(&typ)) //nolint:errcheck // the device may be gone
		d.streaming = false
	}
	for _, b := range d.bufs {
		if b != nil {
			unix.Munmap(b) //nolint:errcheck // nothing to do about it
		}
	}
	d.bufs = nil
	unix.Close(d.fd) //nolint:errcheck // nothing left to save
}

// queryCaps reads the device's identity and what the opened node can do.
func queryCaps(fd int) (driver, card string, caps uint32, err error) {
	var c uapi.Capability
	if err := ioctl(fd, uapi.VIDIOC_QUERYCAP, unsafe.Pointer(&c)); err != nil {
		return "", "", 0, err
	}
	return uapi.String(c.Driver[:]), uapi.String(c.Card[:]), c.NodeCaps(), nil
}

// isStreamingCapture reports whether a node can do what this driver
// needs: single-planar capture through streaming I/O.
func isStreamingCapture(caps uint32) bool {
	return caps&uapi.V4L2_CAP_VIDEO_CAPTURE != 0 && caps&uapi.V4L2_CAP_STREAMING != 0
}

// openDevice opens the device, negotiates H.264, sets the encoder
// controls, maps the buffers and starts streaming.
func openDevice(s *Source) (sess session, err error) {
	path := s.cfg.Device
	fd, err := openNode(path)
	if err != nil {
		return nil, fmt.Errorf("v4l2 %s: open: %w", path, err)
	}
	d := &devSession{fd: fd}
	defer func() {
		if sess == nil {
			d.close()
		}
	}()

	driver, card, caps, err := queryCaps(fd)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS) {
		// ENOTTY from a file that is not a V4L2 node; ENOSYS where the
		// ioctl cannot even be passed on (qemu-user).
		return nil, &fatalError{fmt.Errorf("v4l2 %s: not a V4L2 device (VIDIOC_QUERYCAP: %v); set device to the camera's /dev/videoN node", path, err)}
	}
	if err != nil {
		return nil, fmt.Errorf("v4l2 %s: VIDIOC_QUERYCAP: %w", path, err)
	}
	if !isStreamingCapture(caps) {
		return nil, &fatalError{fmt.Errorf("v4l2 %s (%s, driver %s): not a single-planar streaming capture device (capabilities %#x); pick the camera's capture node (v4l2-ctl --list-devices)",
			path, card, driver, caps)}
	}
	if err := s.negotiate(fd, driver, card); err != nil {
		return nil, err
	}
	s.applyControls(fd)
	if err := d.mapBuffers(path, uint32(s.cfg.Buffers)); err != nil {
		return nil, err
	}
	for i := range d.bufs {
		if err := d.queue(uint32(i)); err != nil {
			return nil, fmt.Errorf("v4l2 %s: queue buffer %d: %w", path, i, err)
		}
	}
	typ := int32(uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE)
	if err := ioctl(fd, uapi.VIDIOC_STREAMON, unsafe.Pointer(&typ)); err != nil {
		return nil, fmt.Errorf("v4l2 %s: VIDIOC_STREAMON: %w", path, err)
	}
	d.streaming = true
	d.pfd = []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	s.log.Info("capturing", "driver", driver, "card", card, "buffers", len(d.bufs))
	return d, nil
}

// mapBuffers asks the driver for count MMAP buffers and maps each one it
// grants into d.bufs, which close unmaps (also after a failure here).
func (d *devSession) mapBuffers(path string, count uint32) error {
	req := uapi.RequestBuffers{Count: count, Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE, Memory: uapi.V4L2_MEMORY_MMAP}
	if err := ioctl(d.fd, uapi.VIDIOC_REQBUFS, unsafe.Pointer(&req)); err != nil {
		return fmt.Errorf("v4l2 %s: VIDIOC_REQBUFS %d MMAP buffers: %w", path, count, err)
	}
	if req.Count == 0 {
		return fmt.Errorf("v4l2 %s: driver granted no buffers", path)
	}
	d.bufs = make([][]byte, req.Count)
	for i := range req.Count {
		b := uapi.Buffer{Index: i, Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE, Memory: uapi.V4L2_MEMORY_MMAP}
		if err := ioctl(d.fd, uapi.VIDIOC_QUERYBUF, unsafe.Pointer(&b)); err != nil {
			return fmt.Errorf("v4l2 %s: VIDIOC_QUERYBUF %d: %w", path, i, err)
		}
		m, err := unix.Mmap(d.fd, int64(b.Offset()), int(b.Length), bufMapProt, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("v4l2 %s: mmap buffer %d (%d bytes): %w", path, i, b.Length, err)
		}
		d.bufs[i] = m
	}
	return nil
}

// format is one entry of the device's capture format list.
type format struct {
	pixelFormat uint32
	description string
}

// formats lists the capture formats the device offers (VIDIOC_ENUM_FMT
// until it answers EINVAL, which ends the list).
func formats(fd int) ([]format, error) {
	var list []format
	for i := range uint32(maxEnumFormats) {
		d := uapi.FmtDesc{Index: i, Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
		err := ioctl(fd, uapi.VIDIOC_ENUM_FMT, unsafe.Pointer(&d))
		if errors.Is(err, unix.EINVAL) {
			break
		}
		if err != nil {
			return list, fmt.Errorf("VIDIOC_ENUM_FMT %d: %w", i, err)
		}
		list = append(list, format{d.PixelFormat, uapi.String(d.Description[:])})
	}
	return list, nil
}

// Probe opens the device node without streaming and reports what it is
// and whether it offers H.264, for `kvscamd check`. It does not change the
// device's format, so it can run beside a capturing daemon.
func Probe(path string) (Info, error) {
	fd, err := openNode(path)
	if err != nil {
		return Info{}, fmt.Errorf("v4l2 %s: open: %w", path, err)
	}
	defer unix.Close(fd) //nolint:errcheck // read-only use
	driver, card, caps, err := queryCaps(fd)
	if err != nil {
		return Info{}, fmt.Errorf("v4l2 %s: not a V4L2 device (VIDIOC_QUERYCAP: %v); set device to the camera's /dev/videoN node", path, err)
	}
	info := Info{Driver: driver, Card: card, Capture: isStreamingCapture(caps)}
	list, err := formats(fd)
	if err != nil {
		return info, fmt.Errorf("v4l2 %s: list formats: %w", path, err)
	}
	for _, f := range list {
		info.Formats = append(info.Formats, fourcc(f.pixelFormat))
		if f.pixelFormat == uapi.V4L2_PIX_FMT_H264 {
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
func (s *Source) negotiate(fd int, driver, card string) error {
	path := s.cfg.Device
	list, err := formats(fd)
	if err != nil {
		return fmt.Errorf("v4l2 %s: device lists no formats yet: %w", path, err)
	}
	if len(list) == 0 {
		// v4l2loopback lists nothing until its producer has set a
		// format; a camera still initialising may behave alike.
		return fmt.Errorf("v4l2 %s: device lists no formats yet", path)
	}
	var offered []string
	hasH264 := false
	for _, f := range list {
		if f.pixelFormat == 0 {
			// Seen from v4l2loopback while its producer is still
			// setting up; a real list never holds a zero code.
			return fmt.Errorf("v4l2 %s: device lists an empty format code; not ready yet", path)
		}
		if f.pixelFormat == uapi.V4L2_PIX_FMT_H264 {
			hasH264 = true
		}
		if len(offered) < maxListedFormats {
			offered = append(offered, fmt.Sprintf("%s (%s)", fourcc(f.pixelFormat), f.description))
		}
	}
	if n := len(list) - len(offered); n > 0 {
		offered = append(offered, fmt.Sprintf("and %d more (v4l2-ctl -d %s --list-formats)", n, path))
	}
	if !hasH264 {
		return &fatalError{fmt.Errorf("v4l2 %s (%s, driver %s): %w; it offers %s. Use a camera with an H.264 encoder, or driver = \"exec\" with an encoder command",
			path, card, driver, ErrNoH264, strings.Join(offered, ", "))}
	}
	want := uapi.Format{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
	*want.Pix() = uapi.PixFormat{
		Width: uint32(s.cfg.Width), Height: uint32(s.cfg.Height),
		PixelFormat: uapi.V4L2_PIX_FMT_H264, Field: uapi.V4L2_FIELD_NONE,
	}
	if err := ioctl(fd, uapi.VIDIOC_S_FMT, unsafe.Pointer(&want)); err != nil {
		// Some devices (v4l2loopback with an active producer) refuse
		// format changes; their current format may still be H.264.
		s.log.Warn("device refused the format; using its current one", "err", fmt.Errorf("VIDIOC_S_FMT: %w", err))
	}
	got := uapi.Format{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
	if err := ioctl(fd, uapi.VIDIOC_G_FMT, unsafe.Pointer(&got)); err != nil {
		return fmt.Errorf("v4l2 %s: VIDIOC_G_FMT: %w", path, err)
	}
	if pf := got.Pix().PixelFormat; pf != uapi.V4L2_PIX_FMT_H264 {
		return fmt.Errorf("v4l2 %s: format is %s after asking for H264", path, fourcc(pf))
	}
	if w, g := want.Pix(), got.Pix(); g.Width != w.Width || g.Height != w.Height {
		s.log.Warn("device chose another picture size", "want", fmt.Sprintf("%dx%d", w.Width, w.Height),
			"got", fmt.Sprintf("%dx%d", g.Width, g.Height))
	}
	parm := uapi.StreamParm{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
	err = ioctl(fd, uapi.VIDIOC_G_PARM, unsafe.Pointer(&parm))
	if err != nil || parm.Capture.Capability&uapi.V4L2_CAP_TIMEPERFRAME == 0 {
		s.log.Info("device does not take a frame rate; it runs at its own", "fps_wanted", s.cfg.FPS)
		return nil
	}
	parm.Capture.TimePerFrame = uapi.Fract{Numerator: 1, Denominator: uint32(s.cfg.FPS)}
	if err := ioctl(fd, uapi.VIDIOC_S_PARM, unsafe.Pointer(&parm)); err != nil {
		s.log.Warn("device refused the frame rate", "fps", s.cfg.FPS, "err", fmt.Errorf("VIDIOC_S_PARM: %w", err))
	}
	return nil
}

// queryControl looks a control up; an error means the device lacks it.
func queryControl(fd int, id uint32) (uapi.QueryCtrl, error) {
	q := uapi.QueryCtrl{ID: id}
	if err := ioctl(fd, uapi.VIDIOC_QUERYCTRL, unsafe.Pointer(&q)); err != nil {
		return q, fmt.Errorf("VIDIOC_QUERYCTRL %#x: %w", id, err)
	}
	return q, nil
}

// setControl sets a control the device has (q, from queryControl). A value
// outside the device's range is refused here: drivers would clamp it
// silently or answer a bare ERANGE.
func setControl(fd int, q *uapi.QueryCtrl, val int32) error {
	if val < q.Minimum || val > q.Maximum {
		return fmt.Errorf("control %#x (%s): value %d outside the device's range %d..%d", q.ID, uapi.String(q.Name[:]), val, q.Minimum, q.Maximum)
	}
	c := uapi.Control{ID: q.ID, Value: val}
	if err := ioctl(fd, uapi.VIDIOC_S_CTRL, unsafe.Pointer(&c)); err != nil {
		return fmt.Errorf("VIDIOC_S_CTRL %#x (%s) = %d: %w", q.ID, uapi.String(q.Name[:]), val, err)
	}
	return nil
}

// applyControls sets the encoder controls the device has and logs the ones
// it lacks (a UVC camera usually has none of them).
func (s *Source) applyControls(fd int) {
	type ctrl struct {
		name string
		id   uint32
		val  int32
	}
	var ctrls []ctrl
	if s.cfg.Bitrate > 0 {
		ctrls = append(ctrls, ctrl{"bitrate", uapi.V4L2_CID_MPEG_VIDEO_BITRATE, int32(min(s.cfg.Bitrate, 1<<31-1))})
	}
	if s.cfg.KeyframeInterval > 0 {
		g := s.cfg.gopFrames()
		// The Pi's encoder takes the GOP as the H.264 I-frame period.
		ctrls = append(ctrls, ctrl{"gop_size", uapi.V4L2_CID_MPEG_VIDEO_GOP_SIZE, g},
			ctrl{"h264_i_period", uapi.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, g})
	}
	// SPS/PPS before every IDR, in the same buffer as the picture.
	ctrls = append(ctrls, ctrl{"repeat_sequence_header", uapi.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1},
		ctrl{"header_mode_joined", uapi.V4L2_CID_MPEG_VIDEO_HEADER_MODE, uapi.V4L2_MPEG_VIDEO_HEADER_MODE_JOINED_WITH_1ST_FRAME})
	if s.cfg.Profile != "" {
		ctrls = append(ctrls, ctrl{"h264_profile", uapi.V4L2_CID_MPEG_VIDEO_H264_PROFILE, profiles[s.cfg.Profile]})
	}
	var lacking, set []string
	for _, c := range ctrls {
		q, err := queryControl(fd, c.id)
		if err != nil {
			lacking = append(lacking, c.name)
			continue
		}
		if err := setControl(fd, &q, c.val); err != nil {
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
