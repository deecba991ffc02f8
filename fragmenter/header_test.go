package fragmenter

import (
	"bytes"
	"testing"

	"github.com/at-wat/ebml-go"

	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// The stream header as ebml-go's reflection marshals it: an independent
// encoder that MarshalHeader must match byte for byte.
type refHeader struct {
	Header struct {
		EBMLVersion        uint64 `ebml:"EBMLVersion"`
		EBMLReadVersion    uint64 `ebml:"EBMLReadVersion"`
		EBMLMaxIDLength    uint64 `ebml:"EBMLMaxIDLength"`
		EBMLMaxSizeLength  uint64 `ebml:"EBMLMaxSizeLength"`
		DocType            string `ebml:"EBMLDocType"`
		DocTypeVersion     uint64 `ebml:"EBMLDocTypeVersion"`
		DocTypeReadVersion uint64 `ebml:"EBMLDocTypeReadVersion"`
	} `ebml:"EBML"`
	Segment struct {
		Info struct {
			TimecodeScale uint64 `ebml:"TimecodeScale"`
			MuxingApp     string `ebml:"MuxingApp"`
			WritingApp    string `ebml:"WritingApp"`
		} `ebml:"Info"`
		Tracks struct {
			TrackEntry []refTrack `ebml:"TrackEntry"`
		} `ebml:"Tracks"`
	} `ebml:"Segment,size=unknown"`
}

type refTrack struct {
	TrackNumber  uint64 `ebml:"TrackNumber"`
	TrackUID     uint64 `ebml:"TrackUID"`
	TrackType    uint64 `ebml:"TrackType"`
	Name         string `ebml:"Name"`
	CodecID      string `ebml:"CodecID"`
	CodecPrivate []byte `ebml:"CodecPrivate"`
	Video        struct {
		PixelWidth  uint64 `ebml:"PixelWidth"`
		PixelHeight uint64 `ebml:"PixelHeight"`
	} `ebml:"Video"`
}

func refMarshalHeader(t *testing.T, cfg h264.DecoderConfig) []byte {
	t.Helper()
	private, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	info, err := h264.ParseSPS(cfg.SPS[0])
	if err != nil {
		t.Fatal(err)
	}
	var h refHeader
	h.Header.EBMLVersion, h.Header.EBMLReadVersion = 1, 1
	h.Header.EBMLMaxIDLength, h.Header.EBMLMaxSizeLength = 4, 8
	h.Header.DocType, h.Header.DocTypeVersion, h.Header.DocTypeReadVersion = "matroska", 2, 2
	h.Segment.Info.TimecodeScale = TimecodeScale
	h.Segment.Info.MuxingApp, h.Segment.Info.WritingApp = appName, appName
	tr := refTrack{TrackNumber: VideoTrack, TrackUID: VideoTrack, TrackType: 1, Name: "video", CodecID: CodecID, CodecPrivate: private}
	tr.Video.PixelWidth, tr.Video.PixelHeight = uint64(info.Width), uint64(info.Height)
	h.Segment.Tracks.TrackEntry = []refTrack{tr}
	var b bytes.Buffer
	if err := ebml.Marshal(&h, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestMarshalHeaderMatchesEBMLGo: for the parameter sets of every test
// clip (profiles, sizes, several SPS/PPS), the hand-written header is the
// one a generic EBML encoder writes.
func TestMarshalHeaderMatchesEBMLGo(t *testing.T) {
	for _, clip := range testclips.All {
		t.Run(clip.Name, func(t *testing.T) {
			nalus, err := h264.SplitAnnexB(clip.Read(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			var cfg h264.DecoderConfig
			for _, n := range nalus {
				switch h264.Type(n) {
				case h264.NALUSPS:
					if len(cfg.SPS) == 0 {
						cfg.SPS = append(cfg.SPS, n)
					}
				case h264.NALUPPS:
					if len(cfg.PPS) == 0 {
						cfg.PPS = append(cfg.PPS, n)
					}
				}
			}
			got, err := MarshalHeader(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if want := refMarshalHeader(t, cfg); !bytes.Equal(got, want) {
				t.Fatalf("header differs from ebml-go's:\n got %x\nwant %x", got, want)
			}
		})
	}
}
