package v4l2

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/h264"
)

func TestConfigValidation(t *testing.T) {
	ok := Config{Device: "/dev/video0", Width: 1280, Height: 720, FPS: 30}
	cases := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no device", func(c *Config) { c.Device = "" }, "device is empty"},
		{"zero fps", func(c *Config) { c.FPS = 0 }, "must be positive"},
		{"negative bitrate", func(c *Config) { c.Bitrate = -1 }, "must not be negative"},
		{"bad profile", func(c *Config) { c.Profile = "extreme" }, `profile "extreme"`},
		{"good profile", func(c *Config) { c.Profile = "high" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.edit(&cfg)
			err := cfg.setDefaults()
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Buffers != DefaultBuffers || cfg.Clock == nil || cfg.Log == nil || cfg.StallTimeout != DefaultStallTimeout {
					t.Fatalf("defaults not applied: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestGOPFrames(t *testing.T) {
	cases := []struct {
		interval time.Duration
		fps      int
		want     int32
	}{{2 * time.Second, 30, 60}, {500 * time.Millisecond, 25, 13}, {0, 30, 1}, {time.Second, 1, 1}}
	for _, c := range cases {
		cfg := Config{KeyframeInterval: c.interval, FPS: c.fps}
		if got := cfg.gopFrames(); got != c.want {
			t.Errorf("%v at %d fps: %d frames, want %d", c.interval, c.fps, got, c.want)
		}
	}
}

func annexB(nalus ...[]byte) []byte {
	var b []byte
	for _, n := range nalus {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

var (
	sps = []byte{0x67, 0x42, 0xc0, 0x1e}
	pps = []byte{0x68, 0xce, 0x3c, 0x80}
	idr = []byte{0x65, 0x88, 0x84, 0x21}
	p   = []byte{0x41, 0x9a, 0x02}
)

var assemblerCases = []struct {
	name    string
	buffers [][]byte
	want    [][][]byte // per buffer: the access unit returned, nil for none
	err     []bool
}{
	{"joined headers", [][]byte{annexB(sps, pps, idr), annexB(p)},
		[][][]byte{{sps, pps, idr}, {p}}, []bool{false, false}},
	{"separate headers join the next picture", [][]byte{annexB(sps, pps), annexB(idr), annexB(p)},
		[][][]byte{nil, {sps, pps, idr}, {p}}, []bool{false, false, false}},
	{"garbage is an error and resets", [][]byte{annexB(sps), []byte("not h264"), annexB(idr)},
		[][][]byte{nil, nil, {idr}}, []bool{false, true, false}},
}

func TestAssembler(t *testing.T) {
	for _, c := range assemblerCases {
		t.Run(c.name, func(t *testing.T) {
			var a assembler
			for i, b := range c.buffers {
				got, err := a.add(b)
				if (err != nil) != c.err[i] {
					t.Fatalf("buffer %d: err %v", i, err)
				}
				if c.err[i] && !errors.Is(err, h264.ErrNoStartCode) {
					t.Fatalf("buffer %d: %v is not ErrNoStartCode", i, err)
				}
				if len(got) != len(c.want[i]) {
					t.Fatalf("buffer %d: %d NAL units, want %d", i, len(got), len(c.want[i]))
				}
				for j := range got {
					if !bytes.Equal(got[j], c.want[i][j]) {
						t.Fatalf("buffer %d NAL %d: %x, want %x", i, j, got[j], c.want[i][j])
					}
				}
			}
		})
	}
}

func BenchmarkAssembler(b *testing.B) {
	slice := append([]byte{0x65}, bytes.Repeat([]byte{0x11}, 20000)...)
	buf := annexB(sps, pps, slice)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	var a assembler
	for b.Loop() {
		if _, err := a.add(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzAssembler feeds arbitrary buffers: no panic, and every access unit
// returned holds non-empty NAL units including a picture.
func FuzzAssembler(f *testing.F) {
	for _, c := range assemblerCases {
		for _, b := range c.buffers {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a assembler
		for range 2 {
			au, err := a.add(append([]byte(nil), b...))
			if err != nil || au == nil {
				continue
			}
			vcl := false
			for _, n := range au {
				if len(n) == 0 {
					t.Fatal("empty NAL unit")
				}
				vcl = vcl || h264.Type(n).IsVCL()
			}
			if !vcl {
				t.Fatal("access unit without a picture")
			}
		}
	})
}
