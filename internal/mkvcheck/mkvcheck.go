// Package mkvcheck validates Matroska files the way the project's tests
// must: no single tool catches every kind of damage, so a file passes only
// if ffmpeg decodes it without a word, ffprobe counts exactly the expected
// frames, mkvmerge remuxes it cleanly, its structure parses with ebml-go
// with every Cluster starting on a key frame and timecodes increasing, and
// (optionally) its pictures are identical to decoding the source clip.
package mkvcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/at-wat/ebml-go"
)

// Expect says what a file must hold.
type Expect struct {
	// Frames is the exact number of video frames.
	Frames int
	// Clusters, if not zero, is the exact number of Clusters.
	Clusters int
	// Source, if set, is an Annex-B file whose decoded pictures must be
	// identical (per-frame MD5) to the file's; SkipSource of its leading
	// decodable pictures are not expected in the file.
	Source     string
	SkipSource int
}

// Tool returns the path of a command-line tool or fails the test saying
// which Debian package provides it.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	pkg := map[string]string{"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "mkvmerge": "mkvtoolnix", "mkvinfo": "mkvtoolnix"}[name]
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s is needed to check Matroska output: apt-get install %s", name, pkg)
	}
	return p
}

// Check validates the file at path and fails the test on any problem.
func Check(tb testing.TB, path string, want Expect) Structure {
	tb.Helper()
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	var stderr bytes.Buffer
	// Passthrough in the file's own millisecond time base keeps its
	// timestamps as they are: camera video is not constant-rate (a
	// restarted source starts less than a frame interval after the last
	// frame), and ffmpeg's default rounding to the frame rate would report
	// its own collisions as errors, while timestamps that really go
	// backwards are still reported.
	cmd := exec.Command(Tool(tb, "ffmpeg"), "-nostdin", "-v", "error", "-i", path,
		"-fps_mode", "passthrough", "-enc_time_base", "-1", "-f", "null", "-")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		fail("ffmpeg decode: %v: %s", err, clip(stderr.String()))
	}

	out, err := exec.Command(Tool(tb, "ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if n, perr := strconv.Atoi(strings.TrimSpace(string(out))); err != nil || perr != nil || n != want.Frames {
		fail("ffprobe counted %q frames, want %d (%v)", clip(string(out)), want.Frames, err)
	}

	remux := filepath.Join(tb.TempDir(), "remux.mkv")
	if out, err := exec.Command(Tool(tb, "mkvmerge"), "-q", "-o", remux, path).CombinedOutput(); err != nil {
		fail("mkvmerge remux: %v: %s", err, clip(string(out)))
	}

	st, err := Parse(path)
	if err != nil {
		fail("structure: %v", err)
	} else {
		if st.Frames != want.Frames {
			fail("structure: %d SimpleBlocks, want %d", st.Frames, want.Frames)
		}
		if want.Clusters != 0 && len(st.Clusters) != want.Clusters {
			fail("structure: %d clusters, want %d", len(st.Clusters), want.Clusters)
		}
	}

	if want.Source != "" && len(errs) == 0 {
		src := frameMD5(tb, want.Source, "h264")
		got := frameMD5(tb, path, "")
		if want.SkipSource > 0 && want.SkipSource <= len(src) {
			src = src[want.SkipSource:]
		}
		if len(src) > len(got) {
			src = src[:len(got)]
		}
		if len(got) != want.Frames || strings.Join(src, "\n") != strings.Join(got, "\n") {
			fail("decoded pictures differ from %s: %d source pictures compared with %d", filepath.Base(want.Source), len(src), len(got))
		}
	}
	if len(errs) > 0 {
		tb.Fatalf("%s is not a valid KVS Matroska file:\n  %s", path, strings.Join(errs, "\n  "))
	}
	return st
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// frameMD5 decodes a file and returns the MD5 of every picture.
func frameMD5(tb testing.TB, path, format string) []string {
	tb.Helper()
	args := []string{"-nostdin", "-v", "error"}
	if format != "" {
		args = append(args, "-f", format)
	}
	args = append(args, "-i", path, "-map", "0:v:0", "-f", "framemd5", "-")
	out, err := exec.Command(Tool(tb, "ffmpeg"), args...).Output()
	if err != nil {
		tb.Fatalf("ffmpeg framemd5 %s: %v", path, err)
	}
	var sums []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		sums = append(sums, strings.TrimSpace(f[len(f)-1]))
	}
	return sums
}

// Structure is what Parse found in a file.
type Structure struct {
	Segments int
	Clusters []Cluster
	Frames   int
	Width    int
	Height   int
}

// Cluster summarises one Cluster.
type Cluster struct {
	Timecode int64
	Frames   int
}

type mkvFile struct {
	Header  []struct{} `ebml:"EBML"`
	Segment []struct {
		Tracks struct {
			TrackEntry []struct {
				CodecID      string `ebml:"CodecID"`
				CodecPrivate []byte `ebml:"CodecPrivate"`
				Video        struct {
					PixelWidth  uint64 `ebml:"PixelWidth"`
					PixelHeight uint64 `ebml:"PixelHeight"`
				} `ebml:"Video"`
			} `ebml:"TrackEntry"`
		} `ebml:"Tracks"`
		Cluster []struct {
			Timecode    uint64       `ebml:"Timecode"`
			SimpleBlock []ebml.Block `ebml:"SimpleBlock"`
		} `ebml:"Cluster"`
	} `ebml:"Segment"`
}

// Parse reads a file's structure with ebml-go and checks the KVS rules:
// an H.264 track with CodecPrivate in every segment, every Cluster starts
// with a key frame, cluster timecodes strictly increase, block timecodes
// never go before their cluster.
func Parse(path string) (Structure, error) {
	f, err := os.Open(path)
	if err != nil {
		return Structure{}, err
	}
	defer f.Close()
	var m mkvFile
	if err := ebml.Unmarshal(f, &m); err != nil {
		return Structure{}, fmt.Errorf("ebml: %w", err)
	}
	var st Structure
	st.Segments = len(m.Segment)
	if st.Segments == 0 {
		return st, fmt.Errorf("no Segment")
	}
	last := int64(-1)
	for si, seg := range m.Segment {
		if len(seg.Tracks.TrackEntry) != 1 || seg.Tracks.TrackEntry[0].CodecID != "V_MPEG4/ISO/AVC" || len(seg.Tracks.TrackEntry[0].CodecPrivate) == 0 {
			return st, fmt.Errorf("segment %d: want one V_MPEG4/ISO/AVC track with CodecPrivate", si)
		}
		st.Width, st.Height = int(seg.Tracks.TrackEntry[0].Video.PixelWidth), int(seg.Tracks.TrackEntry[0].Video.PixelHeight)
		for ci, c := range seg.Cluster {
			tc := int64(c.Timecode)
			if tc <= last {
				return st, fmt.Errorf("segment %d cluster %d: timecode %d not after %d", si, ci, tc, last)
			}
			if len(c.SimpleBlock) == 0 || !c.SimpleBlock[0].Keyframe {
				return st, fmt.Errorf("segment %d cluster %d (timecode %d): does not start with a key frame", si, ci, tc)
			}
			for _, b := range c.SimpleBlock {
				if b.Timecode < 0 {
					return st, fmt.Errorf("cluster %d: block before its cluster (%d ms)", ci, b.Timecode)
				}
				last = max(last, tc+int64(b.Timecode))
			}
			last = max(last, tc)
			st.Clusters = append(st.Clusters, Cluster{Timecode: tc, Frames: len(c.SimpleBlock)})
			st.Frames += len(c.SimpleBlock)
		}
	}
	return st, nil
}
