// Package uapi mirrors the parts of the Linux kernel's V4L2 user-space API
// (linux/videodev2.h, linux/v4l2-controls.h) that the V4L2 driver uses: the
// structs its ioctls take, their request numbers, and the flag and control
// values it reads and sets. It holds layouts and numbers only, no system
// calls, so that it builds on every platform and can be type-checked for
// any GOARCH (the layout test does so to compare each target with the
// kernel headers).
//
// Layouts follow the kernel's on amd64, arm64 and 32-bit ARM from field
// types alone: fields that are C long or pointers in the kernel are Go int
// or uintptr here, which have the same width and alignment on every Linux
// port of Go. On 32-bit ARM this gives struct v4l2_buffer its old 32-bit
// struct timeval, which the kernel takes through its time32 compatibility
// ioctls (the numbers encode the struct size, so it knows which one it got);
// V4L2 buffer timestamps are CLOCK_MONOTONIC, far from overflowing 32 bits.
//
// Constants keep the kernel's names, so that they can be looked up in its
// documentation and checked against its headers by name.
package uapi

import "unsafe"

// clong is C's long: as wide as a pointer on every Linux ABI Go supports
// (ILP32 and LP64), and so is Go's int.
type clong = int

// Capability is struct v4l2_capability (VIDIOC_QUERYCAP).
type Capability struct {
	Driver       [16]byte
	Card         [32]byte
	BusInfo      [32]byte
	Version      uint32
	Capabilities uint32 // of the whole device
	DeviceCaps   uint32 // of the opened node, when V4L2_CAP_DEVICE_CAPS is set
	_            [3]uint32
}

// NodeCaps is what the opened node can do: a device with several nodes
// (a codec's capture and output sides, a camera's metadata node) reports
// the union of them all in Capabilities.
func (c *Capability) NodeCaps() uint32 {
	if c.Capabilities&V4L2_CAP_DEVICE_CAPS != 0 {
		return c.DeviceCaps
	}
	return c.Capabilities
}

// FmtDesc is struct v4l2_fmtdesc (VIDIOC_ENUM_FMT).
type FmtDesc struct {
	Index       uint32
	Type        uint32
	Flags       uint32
	Description [32]byte
	PixelFormat uint32
	MbusCode    uint32
	_           [3]uint32
}

// PixFormat is struct v4l2_pix_format, the single-planar member of
// Format's union.
type PixFormat struct {
	Width        uint32
	Height       uint32
	PixelFormat  uint32
	Field        uint32
	BytesPerLine uint32
	SizeImage    uint32
	Colorspace   uint32
	Priv         uint32
	Flags        uint32
	YcbcrEnc     uint32 // a union with hsv_enc
	Quantization uint32
	XferFunc     uint32
}

// formatUnionSize is the size of struct v4l2_format's union (raw_data).
const formatUnionSize = 200

// FormatUnion is struct v4l2_format's union. Some of its members
// (struct v4l2_window) hold pointers, so it is pointer-aligned: Format is
// 208 bytes on 64-bit targets and 204 on 32-bit ones.
type FormatUnion struct {
	_   [0]uintptr
	Raw [formatUnionSize]byte
}

// Format is struct v4l2_format (VIDIOC_G_FMT, VIDIOC_S_FMT).
type Format struct {
	Type uint32
	Fmt  FormatUnion
}

// Pix is the union read as the single-planar pixel format, which it is for
// V4L2_BUF_TYPE_VIDEO_CAPTURE and _OUTPUT.
func (f *Format) Pix() *PixFormat { return (*PixFormat)(unsafe.Pointer(&f.Fmt)) }

// Fract is struct v4l2_fract.
type Fract struct {
	Numerator   uint32
	Denominator uint32
}

// CaptureParm is struct v4l2_captureparm, the capture member of
// StreamParm's union.
type CaptureParm struct {
	Capability   uint32 // V4L2_CAP_TIMEPERFRAME when the frame rate can be set
	CaptureMode  uint32
	TimePerFrame Fract
	ExtendedMode uint32
	ReadBuffers  uint32
	_            [4]uint32
}

// parmUnionSize is the size of struct v4l2_streamparm's union (raw_data).
const parmUnionSize = 200

// StreamParm is struct v4l2_streamparm (VIDIOC_G_PARM, VIDIOC_S_PARM). Its
// union holds no pointers, so Capture sits right after Type on every
// target.
type StreamParm struct {
	Type    uint32
	Capture CaptureParm
	_       [parmUnionSize - unsafe.Sizeof(CaptureParm{})]byte
}

// RequestBuffers is struct v4l2_requestbuffers (VIDIOC_REQBUFS).
type RequestBuffers struct {
	Count        uint32
	Type         uint32
	Memory       uint32
	Capabilities uint32
	Flags        uint8
	_            [3]uint8
}

// Timeval is the struct timeval inside struct v4l2_buffer: two C longs,
// so 32-bit seconds on 32-bit ARM (see the package comment).
type Timeval struct {
	Sec  clong
	Usec clong
}

// Timecode is struct v4l2_timecode.
type Timecode struct {
	Type     uint32
	Flags    uint32
	Frames   uint8
	Seconds  uint8
	Minutes  uint8
	Hours    uint8
	UserBits [4]uint8
}

// Buffer is struct v4l2_buffer (VIDIOC_QUERYBUF, VIDIOC_QBUF, VIDIOC_DQBUF).
type Buffer struct {
	Index     uint32
	Type      uint32
	BytesUsed uint32
	Flags     uint32
	Field     uint32
	Timestamp Timeval
	Timecode  Timecode
	Sequence  uint32
	Memory    uint32
	// M is the union m: a __u32 offset for V4L2_MEMORY_MMAP, else an
	// unsigned long, a pointer or an fd; pointer-sized and aligned. Read
	// the offset with Offset, which is right whatever the byte order.
	M         uintptr
	Length    uint32
	_         uint32 // reserved2
	RequestFD int32  // a union with reserved
}

// Offset is m.offset: where to mmap an MMAP buffer in the device file.
func (b *Buffer) Offset() uint32 { return *(*uint32)(unsafe.Pointer(&b.M)) }

// QueryCtrl is struct v4l2_queryctrl (VIDIOC_QUERYCTRL).
type QueryCtrl struct {
	ID           uint32
	Type         uint32
	Name         [32]byte
	Minimum      int32
	Maximum      int32
	Step         int32
	DefaultValue int32
	Flags        uint32
	_            [2]uint32
}

// Control is struct v4l2_control (VIDIOC_G_CTRL, VIDIOC_S_CTRL).
type Control struct {
	ID    uint32
	Value int32
}

// String is a fixed-size, NUL-padded name field (Capability.Card,
// FmtDesc.Description, ...) as a Go string.
func String(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
