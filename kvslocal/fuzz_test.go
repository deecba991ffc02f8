package kvslocal_test

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// fuzzEpoch is a fixed past instant so seeds are deterministic.
var fuzzEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// syntheticMovie is a small well-formed stream that needs no encoder:
// three one-second fragments of five frames with made-up payloads.
func syntheticMovie() movie {
	rnd := rand.New(rand.NewSource(1))
	avcc := []byte{1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE}
	m := movie{docType: "matroska", scale: 1_000_000, tracks: []mtrack{{num: 1, typ: 1, codec: "V_MPEG4/ISO/AVC", private: avcc}}}
	base := uint64(fuzzEpoch.UnixMilli())
	for c := 0; c < 3; c++ {
		cl := mcluster{tc: base + uint64(c)*1000}
		for k := 0; k < 5; k++ {
			data := make([]byte, 50+rnd.Intn(200))
			rnd.Read(data)
			cl.blocks = append(cl.blocks, mblock{track: 1, rel: int16(k * 200), key: k == 0, data: data})
		}
		m.clusters = append(m.clusters, cl)
	}
	return m
}

const fuzzMaxFragment = 64 << 10

func FuzzParseMKV(f *testing.F) {
	m := syntheticMovie()
	f.Add(m.bytes())
	u := m.clone()
	u.unknownClusters = true
	f.Add(u.bytes())
	for _, tc := range ruleCases() {
		f.Add(tc.body(m.clone()))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		held, _, err := kvslocal.ParseHeld(b, fuzzMaxFragment, fuzzEpoch.Add(time.Hour))
		// A fragment buffer never grows past the fragment limit plus one
		// element header.
		if held > fuzzMaxFragment+32 {
			t.Fatalf("parser held %d bytes for a %d-byte fragment limit", held, fuzzMaxFragment)
		}
		var se *kvslocal.StreamError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("parse of in-memory bytes failed with %T %v, want *StreamError", err, err)
		}
		if se != nil && kvslocal.ErrorCodes[se.Code] == "" {
			t.Fatalf("unknown ErrorId %d", se.Code)
		}
	})
}

// CheckStream reaches the same verdicts offline as the server online.
func TestCheckStreamMatchesServerRules(t *testing.T) {
	for _, tc := range ruleCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := liveMovie(t)
			m.clusters = m.clusters[:3]
			frags, err := kvslocal.CheckStream(bytes.NewReader(tc.body(m)), kvslocal.CheckOptions{
				MaxFragmentSize: tc.opts.MaxFragmentSize, MaxFragmentDuration: tc.opts.MaxFragmentDuration,
				MinFragmentDuration: tc.opts.MinFragmentDuration,
			})
			code := 0
			var se *kvslocal.StreamError
			if errors.As(err, &se) {
				code = se.Code
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || len(frags) != tc.okFragments {
				t.Fatalf("got code %d after %d fragments (%v), want %d after %d", code, len(frags), err, tc.code, tc.okFragments)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	m := liveMovie(b)
	body := m.bytes()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kvslocal.CheckStream(bytes.NewReader(body), kvslocal.CheckOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
