package h264

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/media"
)

var splitCases = []struct {
	name string
	in   []byte
	want [][]byte
	err  error
}{
	{"three-byte", []byte{0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3}, [][]byte{{0x67, 1, 2}, {0x68, 3}}, nil},
	{"four-byte", []byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 3}, [][]byte{{0x67, 1}, {0x68, 3}}, nil},
	{"leading zeros", []byte{0, 0, 0, 0, 0, 1, 0x09, 0xf0}, [][]byte{{0x09, 0xf0}}, nil},
	{"empty units skipped", []byte{0, 0, 1, 0, 0, 1, 0x65, 0x88}, [][]byte{{0x65, 0x88}}, nil},
	{"trailing zeros", []byte{0, 0, 1, 0x65, 0x88, 0, 0}, [][]byte{{0x65, 0x88}}, nil},
	{"no start code", []byte{0x65, 0x88, 0x84}, nil, ErrNoStartCode},
	{"garbage first", []byte{7, 0, 0, 1, 0x65}, nil, ErrNoStartCode},
}

func TestSplitAnnexB(t *testing.T) {
	for _, c := range splitCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SplitAnnexB(c.in, nil)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if c.err == nil && !EqualNALUs(got, c.want) {
				t.Fatalf("got %x, want %x", got, c.want)
			}
		})
	}
}

func readAll(t testing.TB, r io.Reader) [][][]byte {
	t.Helper()
	rd := NewReader(r)
	var aus [][][]byte
	for {
		au, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return aus
		}
		if err != nil {
			t.Fatal(err)
		}
		aus = append(aus, au)
	}
}

// TestReaderClips checks access-unit grouping on every committed clip, fed
// whole and one byte at a time, against the counts ffprobe reports.
func TestReaderClips(t *testing.T) {
	for _, clip := range testclips.All {
		t.Run(clip.Name, func(t *testing.T) {
			data := clip.Read(t)
			whole := readAll(t, bytes.NewReader(data))
			bytewise := readAll(t, iotest.OneByteReader(bytes.NewReader(data)))
			if len(whole) != clip.Frames || len(bytewise) != clip.Frames {
				t.Fatalf("access units: %d whole, %d byte by byte, want %d", len(whole), len(bytewise), clip.Frames)
			}
			idrs, lead := 0, -1
			for i, au := range whole {
				if !EqualNALUs(au, bytewise[i]) {
					t.Fatalf("access unit %d differs between whole and byte-wise reads", i)
				}
				if IsIDR(au) {
					idrs++
					if lead < 0 {
						lead = i
					}
				}
				vcl := 0
				for _, n := range au {
					if Type(n).IsVCL() {
						vcl++
					}
				}
				if vcl == 0 {
					t.Fatalf("access unit %d has no slice", i)
				}
			}
			if idrs != clip.IDRs || lead != clip.LeadingNonIDR {
				t.Fatalf("IDRs %d (first at %d), want %d (first at %d)", idrs, lead, clip.IDRs, clip.LeadingNonIDR)
			}
			// Splitting the whole file must see the same NAL units.
			all, err := SplitAnnexB(data, nil)
			if err != nil {
				t.Fatal(err)
			}
			var flat [][]byte
			for _, au := range whole {
				flat = append(flat, au...)
			}
			if !EqualNALUs(all, flat) {
				t.Fatalf("SplitAnnexB found %d NAL units, Reader %d", len(all), len(flat))
			}
			// In pooled memory, released after each unit as the
			// fragmenter's caller does, the units are the same and the
			// memory is reused.
			p := media.NewFramePool(2)
			rd := NewReader(bytes.NewReader(data))
			rd.UsePool(p)
			seen := map[*media.FrameMem]bool{}
			for i := 0; ; i++ {
				m, err := rd.NextMem()
				if errors.Is(err, io.EOF) {
					if i != clip.Frames {
						t.Fatalf("pooled reader gave %d access units, want %d", i, clip.Frames)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if !EqualNALUs(m.NALUs, whole[i]) {
					t.Fatalf("pooled access unit %d differs", i)
				}
				seen[m] = true
				var fr media.Frame
				fr.Attach(m)
				fr.Release()
			}
			if len(seen) > 3 {
				t.Errorf("%d buffers for %d released access units, want at most 3", len(seen), clip.Frames)
			}
		})
	}
}

func TestMultiSliceGrouping(t *testing.T) {
	aus := readAll(t, bytes.NewReader(testclips.Get("multislice.h264").Read(t)))
	for i, au := range aus {
		slices := 0
		for _, n := range au {
			if Type(n).IsVCL() {
				slices++
			}
		}
		if slices != 4 {
			t.Fatalf("access unit %d has %d slices, want 4", i, slices)
		}
	}
}

func TestReaderSkipsGarbageBeforeFirstStartCode(t *testing.T) {
	data := append([]byte{0x12, 0x34, 0x56}, testclips.Get("high-aud.h264").Read(t)...)
	rd := NewReader(bytes.NewReader(data))
	n := 0
	for {
		if _, err := rd.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 120 || rd.Skipped() != 3 {
		t.Fatalf("got %d access units, %d bytes skipped; want 120 and 3", n, rd.Skipped())
	}
}

func TestParseSPSAndConfig(t *testing.T) {
	for _, clip := range testclips.All {
		t.Run(clip.Name, func(t *testing.T) {
			nalus, err := SplitAnnexB(clip.Read(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			var cfg DecoderConfig
			for _, n := range nalus {
				switch Type(n) {
				case NALUSPS:
					if len(cfg.SPS) == 0 {
						cfg.SPS = append(cfg.SPS, n)
					}
				case NALUPPS:
					if len(cfg.PPS) == 0 {
						cfg.PPS = append(cfg.PPS, n)
					}
				}
			}
			info, err := ParseSPS(cfg.SPS[0])
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != clip.Width || info.Height != clip.Height {
				t.Fatalf("size %dx%d, want %dx%d", info.Width, info.Height, clip.Width, clip.Height)
			}
			rec, err := cfg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var back DecoderConfig
			if err := back.Unmarshal(rec); err != nil {
				t.Fatal(err)
			}
			if !back.Equal(cfg) || rec[1] != info.Profile || rec[3] != info.Level {
				t.Fatalf("record %x does not round-trip", rec)
			}
		})
	}
}

func TestDecoderConfigErrors(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 66, 0, 30, 0xff, 0xe1}, {2, 66, 0, 30, 0xff, 0xe1, 0}, {1, 66, 0, 30, 0xfd, 0xe0, 0}, {1, 66, 0, 30, 0xff, 0xe1, 0, 9, 0x67}} {
		var c DecoderConfig
		if err := c.Unmarshal(b); !errors.Is(err, ErrBadConfig) {
			t.Errorf("Unmarshal(%x) = %v, want ErrBadConfig", b, err)
		}
	}
	if _, err := (DecoderConfig{}).Marshal(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("empty Marshal = %v", err)
	}
	if _, err := ParseSPS([]byte{0x68, 1, 2, 3}); err == nil {
		t.Error("ParseSPS accepted a PPS")
	}
}

func seeds(f *testing.F) {
	for _, c := range splitCases {
		f.Add(c.in)
	}
	for _, clip := range testclips.All[:2] {
		f.Add(clip.Read(f)[:4096])
	}
}

func FuzzSplitAnnexB(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		nalus, err := SplitAnnexB(b, nil)
		if err != nil {
			return
		}
		for _, n := range nalus {
			if len(n) == 0 || n[len(n)-1] == 0 {
				t.Fatalf("bad unit %x", n)
			}
			if bytes.Contains(n, []byte{0, 0, 1}) {
				t.Fatalf("unit %x contains a start code", n)
			}
		}
	})
}

func FuzzReader(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := NewReader(iotest.HalfReader(bytes.NewReader(b)))
		total := 0
		for {
			au, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if errors.Is(err, ErrTooLarge) {
					continue
				}
				t.Fatal(err)
			}
			vcl := false
			for _, n := range au {
				total += len(n)
				vcl = vcl || Type(n).IsVCL()
			}
			if !vcl {
				t.Fatalf("access unit without a slice: %x", au)
			}
		}
		if total > len(b) {
			t.Fatalf("read %d bytes of NAL units from %d input bytes", total, len(b))
		}
	})
}

func FuzzParseSPS(f *testing.F) {
	for _, clip := range testclips.All {
		nalus, _ := SplitAnnexB(clip.Read(f), nil)
		for _, n := range nalus {
			if Type(n) == NALUSPS {
				f.Add(n)
				break
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseSPS(b)
		if err != nil {
			return
		}
		if info.Width <= 0 || info.Height <= 0 {
			t.Fatalf("accepted size %dx%d", info.Width, info.Height)
		}
		rec, err := DecoderConfig{SPS: [][]byte{b}, PPS: [][]byte{{0x68, 0xce}}}.Marshal()
		if err != nil {
			return
		}
		var back DecoderConfig
		if err := back.Unmarshal(rec); err != nil {
			t.Fatalf("own record %x does not parse: %v", rec, err)
		}
	})
}

// BenchmarkReader reads a clip with memory of its own per access unit and
// with a pool whose frames are released as they are consumed (the
// sources' way).
func BenchmarkReader(b *testing.B) {
	data := testclips.Get("baseline-repeat.h264").Read(b)
	b.Run("alloc", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			rd := NewReader(bytes.NewReader(data))
			for {
				if _, err := rd.Next(); err != nil {
					break
				}
			}
		}
	})
	b.Run("pool", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		p := media.NewFramePool(media.DefaultFramePoolSize)
		for b.Loop() {
			rd := NewReader(bytes.NewReader(data))
			rd.UsePool(p)
			for {
				m, err := rd.NextMem()
				if err != nil {
					break
				}
				var fr media.Frame
				fr.Attach(m)
				fr.Release()
			}
		}
	})
}
