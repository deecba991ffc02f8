package kvslocal_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// ruleCase is one way to break the MKV stream, with the ErrorId the
// service answers. The same table seeds the parser's fuzz target.
type ruleCase struct {
	name string
	opts kvslocal.Options
	// body makes the PutMedia body from a good movie.
	body func(m movie) []byte
	code int
	// errorCode is the ack's ErrorCode when it is not ErrorCodes[code].
	errorCode string
	// okFragments is how many fragments must be RECEIVED before the error.
	okFragments int
}

func ruleCases() []ruleCase {
	withTracks := func(m movie, extra ...mtrack) movie {
		m.tracks = append(m.tracks, extra...)
		return m
	}
	return []ruleCase{
		{name: "not EBML", body: func(m movie) []byte { return []byte("GET / HTTP/1.1\r\n\r\nnot a matroska stream") }, code: 4006},
		{name: "doctype", body: func(m movie) []byte { m.docType = "mp4"; return m.bytes() }, code: 4006},
		{name: "webm doctype is fine", body: func(m movie) []byte { m.docType = "webm"; return m.bytes() }, code: 0, okFragments: 3},
		{name: "codec neither H.264 nor H.265", body: func(m movie) []byte { m.tracks[0].codec = "V_VP8"; return m.bytes() }, code: 4006},
		{name: "H.265 track", body: func(m movie) []byte {
			// configurationVersion 1 and the fixed part of an
			// HEVCDecoderConfigurationRecord, no NAL arrays.
			m.tracks[0].codec, m.tracks[0].private = "V_MPEGH/ISO/HEVC", append([]byte{1, 1, 0x60}, make([]byte, 20)...)
			return m.bytes()
		}, code: 0, okFragments: 3},
		{name: "H.265 without a configuration record", body: func(m movie) []byte {
			m.tracks[0].codec, m.tracks[0].private = "V_MPEGH/ISO/HEVC", []byte{1, 1, 0x60}
			return m.bytes()
		}, code: 4006},
		{name: "fragment too short", opts: kvslocal.Options{MinFragmentDuration: 1500 * time.Millisecond}, body: func(m movie) []byte { return m.bytes() },
			code: 4002, errorCode: kvslocal.ErrorCodeMinFragmentDuration},
		{name: "last fragment too short", body: func(m movie) []byte {
			m.clusters[2].blocks = m.clusters[2].blocks[:len(m.clusters[2].blocks)/2]
			return m.bytes()
		}, code: 4002, errorCode: kvslocal.ErrorCodeMinFragmentDuration, okFragments: 2},
		{name: "no CodecPrivate", body: func(m movie) []byte { m.tracks[0].private = nil; return m.bytes() }, code: 4006},
		{name: "four tracks", body: func(m movie) []byte {
			return withTracks(m, mtrack{2, 2, "A_AAC", []byte{0x12, 0x10}}, mtrack{3, 2, "A_AAC", []byte{0x12, 0x10}}, mtrack{4, 2, "A_AAC", []byte{0x12, 0x10}}).bytes()
		}, code: 4012},
		{name: "declared track without frames", body: func(m movie) []byte { return withTracks(m, mtrack{2, 2, "A_AAC", []byte{0x12, 0x10}}).bytes() }, code: 4011},
		{name: "block for undeclared track", body: func(m movie) []byte {
			m.clusters[1].blocks[3].track = 5
			return m.bytes()
		}, code: 4010, okFragments: 1},
		{name: "cluster not on a key frame", body: func(m movie) []byte {
			m.clusters[1].blocks[0].key = false
			return m.bytes()
		}, code: 4006, okFragments: 1},
		{name: "timecode goes back", body: func(m movie) []byte {
			m.clusters[1], m.clusters[2] = m.clusters[2], m.clusters[1]
			return m.bytes()
		}, code: 4004, okFragments: 2},
		{name: "fragment starts at the previous last frame", opts: kvslocal.Options{MinFragmentDuration: -1}, body: func(m movie) []byte {
			prev := m.clusters[0]
			last := prev.blocks[len(prev.blocks)-1].rel
			m.clusters[1].tc = prev.tc + uint64(last)
			return m.bytes()
		}, code: 4004, okFragments: 1},
		{name: "negative block timecode", body: func(m movie) []byte {
			m.clusters[0].blocks[2].rel = -5
			return m.bytes()
		}, code: 4004},
		{name: "fragment too long", opts: kvslocal.Options{MaxFragmentDuration: 500 * time.Millisecond}, body: func(m movie) []byte { return m.bytes() }, code: 4002},
		{name: "fragment too large", opts: kvslocal.Options{MaxFragmentSize: 20_000}, body: func(m movie) []byte { return m.bytes() }, code: 4001},
		{name: "timestamp in the future", body: func(m movie) []byte { return m.shift(uint64(time.Hour / time.Millisecond)).bytes() }, code: 4007},
		{name: "too much metadata", body: func(m movie) []byte {
			tags := map[string]string{}
			for i := 0; i < 11; i++ {
				tags["key"+strconv.Itoa(i)] = "v"
			}
			m.clusters[1].tagsBefore = tags
			return m.bytes()
		}, code: 4009, okFragments: 0},
		{name: "reserved metadata name", body: func(m movie) []byte {
			m.clusters[1].tagsBefore = map[string]string{"AWS_MY_TAG": "x"}
			return m.bytes()
		}, code: 4009},
		{name: "ten metadata tags are fine", body: func(m movie) []byte {
			tags := map[string]string{}
			for i := 0; i < 10; i++ {
				tags["key"+strconv.Itoa(i)] = "v"
			}
			m.clusters[1].tagsBefore = tags
			return m.bytes()
		}, code: 0, okFragments: 3},
		{name: "second segment", body: func(m movie) []byte {
			return append(m.bytes(), m.header()...)
		}, code: 4006, okFragments: 2},
		{name: "tracks after a cluster", body: func(m movie) []byte {
			h := m.header()
			b := append(h[:len(h):len(h)], m.chunk(0)...)
			return append(b, el(eTracks)...)
		}, code: 4006, okFragments: 0},
		{name: "truncated inside a block", body: func(m movie) []byte {
			b := m.bytes()
			return b[:len(b)-100]
		}, code: 4006, okFragments: 2},
		{name: "garbage between clusters", body: func(m movie) []byte {
			b := append(m.header(), m.chunk(0)...)
			b = append(b, 0x00, 0x00, 0x00, 0x13)
			return append(b, m.chunk(1)...)
		}, code: 4006, okFragments: 0},
	}
}

// The first three fragments of the ffmpeg movie are enough for every case.
func TestPutMediaRules(t *testing.T) {
	for _, unknown := range []bool{false, true} {
		for _, tc := range ruleCases() {
			t.Run(tc.name+"/unknown="+strconv.FormatBool(unknown), func(t *testing.T) {
				o := tc.opts
				o.AckFraming = kvslocal.FramingConcatenated
				srv := kvslocal.Start(t, o)
				newStream(t, srv, "s", time.Hour)
				m := liveMovie(t)
				m.unknownClusters = unknown
				m.clusters = m.clusters[:3]
				c, resp := openPutMedia(t, srv, "s", pmOpts{})
				if resp != nil {
					t.Fatalf("status %d", resp.StatusCode)
				}
				go func() { _ = c.send(tc.body(m)); c.closeBody() }()
				acks, err := c.all()
				if err != nil {
					t.Fatalf("ACK stream: %v", err)
				}
				var errs []ackMsg
				for _, a := range acks {
					if a.EventType == "ERROR" {
						errs = append(errs, a)
					}
				}
				if tc.code == 0 {
					if len(errs) != 0 {
						t.Fatalf("want no error, got %v", describe(acks))
					}
				} else {
					want := tc.errorCode
					if want == "" {
						want = kvslocal.ErrorCodes[tc.code]
					}
					if len(errs) != 1 || errs[0].ErrorId != tc.code || errs[0].ErrorCode != want {
						t.Fatalf("want ERROR %d, got %v", tc.code, describe(acks))
					}
					if acks[len(acks)-1].EventType != "ERROR" {
						t.Fatalf("ERROR must be the last event: %v", describe(acks))
					}
				}
				if n := len(srv.Fragments("s")); n != tc.okFragments {
					t.Fatalf("%d fragments received, want %d; acks %v", n, tc.okFragments, describe(acks))
				}
			})
		}
	}
}
