package fragmenter

import (
	"encoding/binary"
	"fmt"

	"github.com/kvscamd/kvscamd/h264"
)

// Matroska element IDs written by hand on the per-frame path.
var (
	idCluster     = []byte{0x1f, 0x43, 0xb6, 0x75}
	idTimecode    = byte(0xe7)
	idSimpleBlock = byte(0xa3)
	// unknownSize is the eight-byte EBML size "unknown": a live stream
	// cannot know how long its Segment or Cluster will be.
	unknownSize = []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// Header fields KVS expects (see the producer SDK's MKV generator).
const (
	// TimecodeScale makes one timecode tick one millisecond.
	TimecodeScale = 1_000_000
	// CodecID is the Matroska codec ID of length-prefixed H.264.
	CodecID = "V_MPEG4/ISO/AVC"
	// VideoTrack is the track number of the only track.
	VideoTrack = 1
	appName    = "kvscamd"
)

// Element IDs of the stream header (Matroska specification).
var (
	idEBML               = []byte{0x1a, 0x45, 0xdf, 0xa3}
	idEBMLVersion        = []byte{0x42, 0x86}
	idEBMLReadVersion    = []byte{0x42, 0xf7}
	idEBMLMaxIDLength    = []byte{0x42, 0xf2}
	idEBMLMaxSizeLength  = []byte{0x42, 0xf3}
	idDocType            = []byte{0x42, 0x82}
	idDocTypeVersion     = []byte{0x42, 0x87}
	idDocTypeReadVersion = []byte{0x42, 0x85}
	idSegment            = []byte{0x18, 0x53, 0x80, 0x67}
	idInfo               = []byte{0x15, 0x49, 0xa9, 0x66}
	idTimecodeScale      = []byte{0x2a, 0xd7, 0xb1}
	idMuxingApp          = []byte{0x4d, 0x80}
	idWritingApp         = []byte{0x57, 0x41}
	idTracks             = []byte{0x16, 0x54, 0xae, 0x6b}
	idTrackEntry         = []byte{0xae}
	idTrackNumber        = []byte{0xd7}
	idTrackUID           = []byte{0x73, 0xc5}
	idTrackType          = []byte{0x83}
	idName               = []byte{0x53, 0x6e}
	idCodecID            = []byte{0x86}
	idCodecPrivate       = []byte{0x63, 0xa2}
	idVideo              = []byte{0xe0}
	idPixelWidth         = []byte{0xb0}
	idPixelHeight        = []byte{0xba}
)

// trackTypeVideo is TrackType for a video track.
const trackTypeVideo = 1

// MarshalHeader returns the stream header for one codec configuration:
// the EBML header, the start of an unknown-size Segment, its Info and its
// Tracks; Clusters follow as further children of the Segment.
func MarshalHeader(cfg h264.DecoderConfig) ([]byte, error) {
	private, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("fragmenter: header: %w", err)
	}
	info, err := h264.ParseSPS(cfg.SPS[0])
	if err != nil {
		return nil, fmt.Errorf("fragmenter: header: %w", err)
	}
	var ebmlHead, segInfo, video, entry, tracks []byte
	ebmlHead = appendUint(ebmlHead, idEBMLVersion, 1)
	ebmlHead = appendUint(ebmlHead, idEBMLReadVersion, 1)
	ebmlHead = appendUint(ebmlHead, idEBMLMaxIDLength, 4)
	ebmlHead = appendUint(ebmlHead, idEBMLMaxSizeLength, 8)
	ebmlHead = appendElement(ebmlHead, idDocType, []byte("matroska"))
	ebmlHead = appendUint(ebmlHead, idDocTypeVersion, 2)
	ebmlHead = appendUint(ebmlHead, idDocTypeReadVersion, 2)

	segInfo = appendUint(segInfo, idTimecodeScale, TimecodeScale)
	segInfo = appendElement(segInfo, idMuxingApp, []byte(appName))
	segInfo = appendElement(segInfo, idWritingApp, []byte(appName))

	video = appendUint(video, idPixelWidth, uint64(info.Width))
	video = appendUint(video, idPixelHeight, uint64(info.Height))
	entry = appendUint(entry, idTrackNumber, VideoTrack)
	entry = appendUint(entry, idTrackUID, VideoTrack)
	entry = appendUint(entry, idTrackType, trackTypeVideo)
	entry = appendElement(entry, idName, []byte("video"))
	entry = appendElement(entry, idCodecID, []byte(CodecID))
	entry = appendElement(entry, idCodecPrivate, private)
	entry = appendElement(entry, idVideo, video)
	tracks = appendElement(tracks, idTrackEntry, entry)

	b := appendElement(nil, idEBML, ebmlHead)
	b = append(b, idSegment...)
	b = append(b, unknownSize...)
	b = appendElement(b, idInfo, segInfo)
	return appendElement(b, idTracks, tracks), nil
}

// appendElement appends an element with its ID, size and payload.
func appendElement(b, id, payload []byte) []byte {
	b = append(b, id...)
	b = appendSize(b, uint64(len(payload)))
	return append(b, payload...)
}

// appendUint appends an unsigned integer element in as few bytes as it
// needs (one for zero).
func appendUint(b, id []byte, v uint64) []byte {
	n := 1
	for n < 8 && v>>(8*n) != 0 {
		n++
	}
	b = append(b, id...)
	b = appendSize(b, uint64(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendSize appends n as an EBML variable-size integer of minimal length.
// The all-ones value of each length means "unknown", so it is skipped.
func appendSize(b []byte, n uint64) []byte {
	l := 1
	for l < 8 && n >= 1<<(7*l)-1 {
		l++
	}
	v := n | 1<<(7*l)
	for i := l - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendClusterStart opens an unknown-size Cluster with an eight-byte
// absolute timecode, as the KVS producers write it.
func appendClusterStart(b []byte, timecode int64) []byte {
	b = append(b, idCluster...)
	b = append(b, unknownSize...)
	b = append(b, idTimecode, 0x88)
	return binary.BigEndian.AppendUint64(b, uint64(timecode))
}

// keepInBlock reports whether a NAL unit goes into the SimpleBlock.
// Delimiters and filler carry nothing a Matroska reader needs.
func keepInBlock(nalu []byte) bool {
	t := h264.Type(nalu)
	return len(nalu) > 0 && t != h264.NALUAUD && t != h264.NALUFiller
}

// appendSimpleBlock appends one frame as a SimpleBlock of track 1 with
// four-byte NAL unit lengths. It does not allocate when b has room.
func appendSimpleBlock(b []byte, rel int16, key bool, nalus [][]byte) []byte {
	size := 4 // track number, timecode, flags
	for _, n := range nalus {
		if keepInBlock(n) {
			size += 4 + len(n)
		}
	}
	flags := byte(0)
	if key {
		flags = 0x80
	}
	b = append(b, idSimpleBlock)
	b = appendSize(b, uint64(size))
	b = append(b, 0x80|VideoTrack, byte(uint16(rel)>>8), byte(rel), flags)
	for _, n := range nalus {
		if keepInBlock(n) {
			b = binary.BigEndian.AppendUint32(b, uint32(len(n)))
			b = append(b, n...)
		}
	}
	return b
}
