package uapi

// Buffer types (enum v4l2_buf_type) and memory kinds (enum v4l2_memory).
const (
	V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
	V4L2_BUF_TYPE_VIDEO_OUTPUT  = 2
	V4L2_MEMORY_MMAP            = 1
)

// Field order (enum v4l2_field): progressive pictures.
const V4L2_FIELD_NONE = 1

// V4L2_PIX_FMT_H264 is H.264 with start codes (Annex-B), as the fourcc
// 'H264'.
const V4L2_PIX_FMT_H264 = 'H' | '2'<<8 | '6'<<16 | '4'<<24

// Capability bits (Capability.Capabilities, .DeviceCaps).
const (
	V4L2_CAP_VIDEO_CAPTURE = 0x00000001
	V4L2_CAP_VIDEO_OUTPUT  = 0x00000002
	V4L2_CAP_STREAMING     = 0x04000000
	V4L2_CAP_DEVICE_CAPS   = 0x80000000
)

// V4L2_CAP_TIMEPERFRAME in CaptureParm.Capability: the device takes a
// frame interval.
const V4L2_CAP_TIMEPERFRAME = 0x1000

// Buffer flags (Buffer.Flags).
const (
	V4L2_BUF_FLAG_KEYFRAME            = 0x00000008
	V4L2_BUF_FLAG_ERROR               = 0x00000040
	V4L2_BUF_FLAG_TIMESTAMP_MASK      = 0x0000e000
	V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN   = 0x00000000
	V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC = 0x00002000
	V4L2_BUF_FLAG_TIMESTAMP_COPY      = 0x00004000
)

// V4L2_CID_BRIGHTNESS is a user control that vivid has, which the VM test
// sets to check the control ioctls against a real driver.
const V4L2_CID_BRIGHTNESS = 0x00980900

// Codec controls (linux/v4l2-controls.h); the driver sets the H.264
// encoder's through VIDIOC_S_CTRL.
const (
	V4L2_CID_CODEC_BASE                               = 0x00990900
	V4L2_CID_MPEG_VIDEO_GOP_SIZE                      = V4L2_CID_CODEC_BASE + 203
	V4L2_CID_MPEG_VIDEO_BITRATE                       = V4L2_CID_CODEC_BASE + 207
	V4L2_CID_MPEG_VIDEO_HEADER_MODE                   = V4L2_CID_CODEC_BASE + 216
	V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER             = V4L2_CID_CODEC_BASE + 226
	V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME               = V4L2_CID_CODEC_BASE + 229
	V4L2_CID_MPEG_VIDEO_H264_I_PERIOD                 = V4L2_CID_CODEC_BASE + 358
	V4L2_CID_MPEG_VIDEO_H264_PROFILE                  = V4L2_CID_CODEC_BASE + 363
	V4L2_MPEG_VIDEO_HEADER_MODE_JOINED_WITH_1ST_FRAME = 1
)

// Menu values of V4L2_CID_MPEG_VIDEO_H264_PROFILE.
const (
	V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE             = 0
	V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE = 1
	V4L2_MPEG_VIDEO_H264_PROFILE_MAIN                 = 2
	V4L2_MPEG_VIDEO_H264_PROFILE_HIGH                 = 4
)
