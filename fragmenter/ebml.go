package fragmenter

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/at-wat/ebml-go"

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

type ebmlHeader struct {
	EBMLVersion        uint64 `ebml:"EBMLVersion"`
	EBMLReadVersion    uint64 `ebml:"EBMLReadVersion"`
	EBMLMaxIDLength    uint64 `ebml:"EBMLMaxIDLength"`
	EBMLMaxSizeLength  uint64 `ebml:"EBMLMaxSizeLength"`
	DocType            string `ebml:"EBMLDocType"`
	DocTypeVersion     uint64 `ebml:"EBMLDocTypeVersion"`
	DocTypeReadVersion uint64 `ebml:"EBMLDocTypeReadVersion"`
}

type segmentInfo struct {
	TimecodeScale uint64 `ebml:"TimecodeScale"`
	MuxingApp     string `ebml:"MuxingApp"`
	WritingApp    string `ebml:"WritingApp"`
}

type videoSettings struct {
	PixelWidth  uint64 `ebml:"PixelWidth"`
	PixelHeight uint64 `ebml:"PixelHeight"`
}

type trackEntry struct {
	TrackNumber  uint64        `ebml:"TrackNumber"`
	TrackUID     uint64        `ebml:"TrackUID"`
	TrackType    uint64        `ebml:"TrackType"`
	Name         string        `ebml:"Name"`
	CodecID      string        `ebml:"CodecID"`
	CodecPrivate []byte        `ebml:"CodecPrivate"`
	Video        videoSettings `ebml:"Video"`
}

type tracks struct {
	TrackEntry []trackEntry `ebml:"TrackEntry"`
}

// streamHeader is everything before the first Cluster. The Segment has
// unknown size; marshalling it writes only the children listed here, and
// Clusters follow as further Segment children.
type streamHeader struct {
	Header  ebmlHeader `ebml:"EBML"`
	Segment struct {
		Info   segmentInfo `ebml:"Info"`
		Tracks tracks      `ebml:"Tracks"`
	} `ebml:"Segment,size=unknown"`
}

// MarshalHeader returns the stream header for one codec configuration.
// It is written once per configuration, so it may use reflection.
func MarshalHeader(cfg h264.DecoderConfig) ([]byte, error) {
	private, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("fragmenter: header: %w", err)
	}
	info, err := h264.ParseSPS(cfg.SPS[0])
	if err != nil {
		return nil, fmt.Errorf("fragmenter: header: %w", err)
	}
	var h streamHeader
	h.Header = ebmlHeader{
		EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
		DocType: "matroska", DocTypeVersion: 2, DocTypeReadVersion: 2,
	}
	h.Segment.Info = segmentInfo{TimecodeScale: TimecodeScale, MuxingApp: appName, WritingApp: appName}
	h.Segment.Tracks.TrackEntry = []trackEntry{{
		TrackNumber: VideoTrack, TrackUID: VideoTrack, TrackType: 1, Name: "video",
		CodecID: CodecID, CodecPrivate: private,
		Video: videoSettings{PixelWidth: uint64(info.Width), PixelHeight: uint64(info.Height)},
	}}
	var b bytes.Buffer
	if err := ebml.Marshal(&h, &b); err != nil {
		return nil, fmt.Errorf("fragmenter: header: marshal: %w", err)
	}
	return b.Bytes(), nil
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
