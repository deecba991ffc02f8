package fragmenter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/media"
)

var epoch = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// accessUnits reads every access unit of clip data.
func accessUnits(tb testing.TB, data []byte) [][][]byte {
	tb.Helper()
	aus, err := readUnits(data)
	if err != nil {
		tb.Fatal(err)
	}
	return aus
}

// readUnits reads access units, skipping oversized ones as a capture
// would; other errors end the read.
func readUnits(data []byte) ([][][]byte, error) {
	rd := h264.NewReader(bytes.NewReader(data))
	var aus [][][]byte
	for {
		au, err := rd.Next()
		switch {
		case errors.Is(err, io.EOF):
			return aus, nil
		case errors.Is(err, h264.ErrTooLarge):
		case err != nil:
			return aus, err
		default:
			aus = append(aus, au)
		}
	}
}

// frames stamps access units at start + k*interval.
func frames(aus [][][]byte, start time.Time, interval time.Duration) []media.Frame {
	out := make([]media.Frame, len(aus))
	for k, au := range aus {
		out[k] = media.Frame{NALUs: au, Time: start.Add(time.Duration(k) * interval), Key: h264.IsIDR(au), Seq: uint64(k)}
	}
	return out
}

// fragmentAll pushes frames and returns every fragment, flushed at the end.
func fragmentAll(f *Fragmenter, frs []media.Frame) []Fragment {
	var out []Fragment
	for _, fr := range frs {
		if frag, ok := f.Push(fr); ok {
			out = append(out, frag)
		}
	}
	if frag, ok := f.Flush(); ok {
		out = append(out, frag)
	}
	return out
}

// writeMKV writes fragments as one file, starting a new segment whenever
// the header changes, as export does.
func writeMKV(tb testing.TB, frags []Fragment) string {
	tb.Helper()
	var b bytes.Buffer
	var header []byte
	for _, f := range frags {
		if !bytes.Equal(f.Header, header) {
			header = f.Header
			b.Write(header)
		}
		b.Write(f.Cluster)
	}
	path := filepath.Join(tb.TempDir(), "out.mkv")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

type keyCounter struct{ n int }

func (k *keyCounter) RequestKeyFrame() { k.n++ }

func TestClips(t *testing.T) {
	for _, clip := range testclips.All {
		t.Run(clip.Name, func(t *testing.T) {
			aus := accessUnits(t, clip.Read(t))
			f := New(Config{FragmentDuration: time.Second})
			frags := fragmentAll(f, frames(aus, epoch, time.Second/time.Duration(clip.FPS)))
			st := f.Stats()
			if int(st.Frames) != clip.Decodable || int(st.DroppedNoIDR) != clip.LeadingNonIDR {
				t.Fatalf("stats %+v, want %d frames and %d dropped", st, clip.Decodable, clip.LeadingNonIDR)
			}
			if len(frags) != clip.IDRs {
				t.Fatalf("%d fragments, want one per IDR (%d)", len(frags), clip.IDRs)
			}
			prevEnd := int64(0)
			for i, fr := range frags {
				if d := fr.Duration - time.Second; fr.Timecode <= prevEnd || d < -time.Millisecond || d > time.Millisecond {
					t.Fatalf("fragment %d: timecode %d after %d, duration %v", i, fr.Timecode, prevEnd, fr.Duration)
				}
				prevEnd = fr.Timecode + int64(fr.Frames-1)*1000/int64(clip.FPS)
			}
			mkvcheck.Check(t, writeMKV(t, frags), mkvcheck.Expect{
				Frames: clip.Decodable, Clusters: clip.IDRs, Source: clip.Path(),
			})
		})
	}
}

// TestTimecodesAreAbsolute checks the first cluster carries the epoch
// milliseconds of the first frame.
func TestTimecodesAreAbsolute(t *testing.T) {
	aus := accessUnits(t, testclips.Get("high-aud.h264").Read(t))
	frags := fragmentAll(New(Config{}), frames(aus, epoch, time.Second/30))
	st, err := mkvcheck.Parse(writeMKV(t, frags))
	if err != nil {
		t.Fatal(err)
	}
	if st.Clusters[0].Timecode != epoch.UnixMilli() || !frags[0].Time().Equal(epoch) {
		t.Fatalf("first cluster at %d, want %d", st.Clusters[0].Timecode, epoch.UnixMilli())
	}
	// The default target is 2 s, so a 4 s clip with an IDR every second
	// makes two fragments of 60 frames.
	if len(frags) != 2 || frags[0].Frames != 60 || frags[1].Frames != 60 {
		t.Fatalf("got %d fragments", len(frags))
	}
}

// TestParameterChangeStartsNewSegment splices two clips of different
// picture sizes: the fragment at the switch carries a new header.
func TestParameterChangeStartsNewSegment(t *testing.T) {
	a, b := testclips.Get("baseline-repeat.h264"), testclips.Get("baseline-360p.h264")
	aus := append(accessUnits(t, a.Read(t)), accessUnits(t, b.Read(t))...)
	f := New(Config{FragmentDuration: 3 * time.Second})
	frags := fragmentAll(f, frames(aus, epoch, time.Second/30))
	if f.Stats().HeaderChanges != 1 {
		t.Fatalf("stats %+v, want one header change", f.Stats())
	}
	headers := 0
	for i := range frags {
		if i == 0 || !bytes.Equal(frags[i].Header, frags[i-1].Header) {
			headers++
		}
	}
	if headers != 2 {
		t.Fatalf("%d distinct headers, want 2", headers)
	}
	// Each segment is a valid file of its own.
	var first, second []Fragment
	for _, fr := range frags {
		if bytes.Equal(fr.Header, frags[0].Header) {
			first = append(first, fr)
		} else {
			second = append(second, fr)
		}
	}
	mkvcheck.Check(t, writeMKV(t, first), mkvcheck.Expect{Frames: a.Frames, Source: a.Path()})
	st := mkvcheck.Check(t, writeMKV(t, second), mkvcheck.Expect{Frames: b.Frames, Source: b.Path()})
	if st.Width != 640 || st.Height != 360 {
		t.Fatalf("second segment is %dx%d", st.Width, st.Height)
	}
	// The whole file holds two segments with increasing timecodes.
	whole, err := mkvcheck.Parse(writeMKV(t, frags))
	if err != nil || whole.Segments != 2 || whole.Frames != a.Frames+b.Frames {
		t.Fatalf("spliced file: %+v, %v", whole, err)
	}
}

// TestCutAtMaxDuration stretches time so that a GOP lasts 30 s: the
// fragmenter asks for a key frame at the target, cuts at the cap, and drops
// frames until the next IDR so KVS never sees an over-long fragment.
func TestCutAtMaxDuration(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	aus := accessUnits(t, clip.Read(t))
	keys := &keyCounter{}
	f := New(Config{KeyFrames: keys})
	frags := fragmentAll(f, frames(aus, epoch, time.Second))
	st := f.Stats()
	// Each 30-frame GOP spans 30 s: frames 0..9 fit in 10 s, 20 are dropped.
	if len(frags) != 5 || st.Cut != 5 || st.Frames != 50 || st.DroppedNoIDR != 100 || keys.n != 5 {
		t.Fatalf("%d fragments, stats %+v, %d key frame requests", len(frags), st, keys.n)
	}
	for _, fr := range frags {
		if fr.Duration > MaxFragmentDuration {
			t.Fatalf("fragment of %v", fr.Duration)
		}
	}
	mkvcheck.Check(t, writeMKV(t, frags), mkvcheck.Expect{Frames: 50, Clusters: 5})
}

// TestRetiming feeds frames whose clock stands still or runs backwards:
// timecodes still strictly increase.
func TestRetiming(t *testing.T) {
	aus := accessUnits(t, testclips.Get("high-aud.h264").Read(t))
	frs := frames(aus, epoch, time.Second/30)
	for k := range frs {
		if k%7 == 3 {
			frs[k].Time = frs[k-1].Time // clock stood still
		}
		if k == 70 {
			for j := k; j < len(frs); j++ {
				frs[j].Time = frs[j].Time.Add(-5 * time.Second) // stepped back
			}
		}
	}
	f := New(Config{})
	frags := fragmentAll(f, frs)
	if f.Stats().Retimed == 0 {
		t.Fatal("no frame was retimed")
	}
	// Frames 1 ms apart confuse ffmpeg's frame-rate guess, so this checks
	// the structure, which is what KVS validates.
	st, err := mkvcheck.Parse(writeMKV(t, frags))
	if err != nil || st.Frames != len(frs) {
		t.Fatalf("%+v, %v", st, err)
	}
}

func TestRunFlushesOnCancel(t *testing.T) {
	aus := accessUnits(t, testclips.Get("high-aud.h264").Read(t))
	in := make(chan media.Frame, len(aus))
	for _, fr := range frames(aus, epoch, time.Second/30) {
		in <- fr
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var got []Fragment
	err := New(Config{}).Run(ctx, in, func(f *Fragment) error { got = append(got, *f); return nil })
	n := 0
	for _, f := range got {
		n += f.Frames
	}
	if err != nil || n != len(aus) {
		t.Fatalf("Run = %v with %d of %d frames", err, n, len(aus))
	}
}

var fragmentCases = []Fragment{
	{},
	{Timecode: 1, Duration: time.Second, Frames: 30, Header: []byte{1, 2}, Cluster: []byte{3, 4, 5}},
	{Timecode: -5, Header: nil, Cluster: bytes.Repeat([]byte{9}, 1000)},
}

func TestFragmentBinary(t *testing.T) {
	for i, c := range fragmentCases {
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Fragment
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got.Timecode != c.Timecode || got.Duration != c.Duration || got.Frames != c.Frames ||
			!bytes.Equal(got.Header, c.Header) || !bytes.Equal(got.Cluster, c.Cluster) {
			t.Fatalf("case %d: got %+v", i, got)
		}
		for cut := range b {
			if err := got.UnmarshalBinary(b[:cut]); !errors.Is(err, ErrBadFragment) {
				t.Fatalf("case %d: truncated at %d: %v", i, cut, err)
			}
		}
	}
}

func FuzzFragmentBinary(f *testing.F) {
	for _, c := range fragmentCases {
		b, _ := c.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Fragment
		if fr.UnmarshalBinary(b) != nil {
			return
		}
		again, err := fr.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded fragment re-encodes differently: %v", err)
		}
	})
}

// FuzzFragmenter feeds arbitrary Annex-B data, one access unit per 33 ms:
// whatever comes out must parse as KVS Matroska.
func FuzzFragmenter(f *testing.F) {
	for _, clip := range testclips.All {
		data := clip.Read(f)
		f.Add(data[:min(len(data), 8192)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frags := fragmentAll(New(Config{FragmentDuration: 100 * time.Millisecond}), frames(fuzzUnits(data), epoch, 33*time.Millisecond))
		if len(frags) == 0 {
			return
		}
		path := writeMKV(t, frags)
		st, err := mkvcheck.Parse(path)
		if err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		n := 0
		for _, fr := range frags {
			n += fr.Frames
		}
		if st.Frames != n {
			t.Fatalf("%d blocks parsed, %d written", st.Frames, n)
		}
	})
}

func fuzzUnits(data []byte) [][][]byte {
	aus, _ := readUnits(data)
	return aus
}

// TestCutAtMaxBytes makes frames so large that a GOP would exceed the
// service's 50 MB fragment limit: the fragment is cut before it.
func TestCutAtMaxBytes(t *testing.T) {
	aus := accessUnits(t, testclips.Get("baseline-repeat.h264").Read(t))
	big := append([]byte{0x06}, bytes.Repeat([]byte{0x80}, 6<<20)...) // a large SEI NAL unit
	frs := frames(aus[:10], epoch, time.Second/30)
	for i := range frs {
		frs[i].NALUs = append(frs[i].NALUs[:len(frs[i].NALUs):len(frs[i].NALUs)], big)
	}
	f := New(Config{})
	frags := fragmentAll(f, frs)
	st := f.Stats()
	if len(frags) != 1 || st.Cut != 1 || st.DroppedNoIDR == 0 {
		t.Fatalf("%d fragments, stats %+v: want one fragment cut by size and the rest of the GOP dropped", len(frags), st)
	}
	if n := len(frags[0].Cluster); n > MaxClusterSize || n < MaxFragmentBytes-7<<20 {
		t.Fatalf("fragment of %d bytes; want just below %d", n, MaxFragmentBytes)
	}
}
