// Package media holds the value types that flow from the frame sources to
// the fragmenter: one captured access unit (Frame), the track it belongs to
// and its codec. It imports nothing of the project, so drivers, the
// fragmenter and tools can share it without depending on each other.
package media

import "time"

// Track identifies a track of a stream. KVS accepts up to three tracks per
// stream; only video is produced today, audio is planned.
type Track uint8

// Tracks. The zero value is video, so that a Frame built without a Track is
// what every source produced before tracks existed.
const (
	TrackVideo Track = iota
	TrackAudio
)

// String names the track for logs and status.
func (t Track) String() string {
	switch t {
	case TrackVideo:
		return "video"
	case TrackAudio:
		return "audio"
	}
	return "track?"
}

// Codec names the encoding of a frame's payload.
type Codec uint8

// Codecs. The zero value is H.264, the only one the fragmenter writes today;
// H.265 is planned.
const (
	CodecH264 Codec = iota
	CodecH265
)

// String names the codec for logs and status.
func (c Codec) String() string {
	switch c {
	case CodecH264:
		return "h264"
	case CodecH265:
		return "h265"
	}
	return "codec?"
}

// Frame is one H.264 access unit as captured.
//
// Ownership: the NALU slices belong to the receiver once the frame has been
// sent; a driver never reuses their backing memory. Drivers that replay a
// file may alias one immutable buffer, which is why receivers must not write
// into them either.
type Frame struct {
	// Track is the track the frame belongs to; every source today
	// delivers video only (TrackVideo).
	Track Track
	// Codec says how NALUs are to be read.
	Codec Codec
	// NALUs are the access unit's NAL units without start codes or length
	// prefixes, in stream order (AUD, SPS, PPS, SEI, slices).
	NALUs [][]byte
	// Time is the capture instant on the wall clock. Drivers derive it from
	// a monotonic timestamp (V4L2 buffers carry CLOCK_MONOTONIC) so that a
	// step of the system clock cannot reorder frames.
	Time time.Time
	// Mono is the capture instant on the monotonic clock, as the kernel or
	// driver reported it; zero when the source has none.
	Mono time.Duration
	// Key is true when the access unit holds an IDR picture. It is set from
	// the NAL unit types, not from driver flags, which are unreliable.
	Key bool
	// Seq numbers frames from 0 within one Run; a gap means frames were
	// lost before they reached the receiver.
	Seq uint64

	// mem is the pooled memory behind NALUs, nil when the frame's memory
	// belongs to the garbage collector (see FramePool).
	mem *FrameMem
}
