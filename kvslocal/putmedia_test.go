package kvslocal_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

func newStream(t *testing.T, srv *kvslocal.Server, name string, retention time.Duration) {
	t.Helper()
	if _, err := srv.CreateStream(name, retention); err != nil {
		t.Fatal(err)
	}
}

// ffprobeFrames counts decoded video frames of an MKV file.
func ffprobeFrames(t *testing.T, path string) int {
	t.Helper()
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Fatal("ffprobe is needed: apt-get install ffmpeg")
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(string(out)), ","))
	if err != nil {
		t.Fatalf("ffprobe output %q", out)
	}
	ff, _ := exec.LookPath("ffmpeg")
	if out, err := exec.Command(ff, "-nostdin", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("ffmpeg decode of %s: %v: %s", path, err, out)
	}
	return n
}

func TestPutMediaFFmpegStream(t *testing.T) {
	for _, unknown := range []bool{false, true} {
		t.Run("unknownClusters="+strconv.FormatBool(unknown), func(t *testing.T) {
			srv := kvslocal.Start(t, kvslocal.Options{Region: testRegion})
			newStream(t, srv, "cam", 24*time.Hour)
			m := liveMovie(t)
			m.unknownClusters = unknown
			c, resp := openPutMedia(t, srv, "cam", pmOpts{})
			if resp != nil {
				typ, msg := apiErrorOf(t, resp)
				t.Fatalf("PutMedia: %d %s %s", resp.StatusCode, typ, msg)
			}
			if err := c.send(m.bytes()); err != nil {
				t.Fatal(err)
			}
			c.closeBody()
			acks, err := c.all()
			if err != nil {
				t.Fatalf("ACK stream: %v", err)
			}
			// Every fragment: one BUFFERING, one RECEIVED, one PERSISTED.
			got := map[string]int{}
			for _, a := range acks {
				got[a.EventType+"@"+strconv.FormatInt(a.tc(), 10)]++
				if a.EventType == "ERROR" {
					t.Fatalf("unexpected error: %v", describe(acks))
				}
			}
			for _, cl := range m.clusters {
				for _, ev := range []string{"BUFFERING", "RECEIVED", "PERSISTED"} {
					if got[ev+"@"+strconv.FormatUint(cl.tc, 10)] != 1 {
						t.Fatalf("want one %s for fragment %d; acks %v", ev, cl.tc, describe(acks))
					}
				}
			}
			frags := srv.Fragments("cam")
			if len(frags) != len(m.clusters) {
				t.Fatalf("%d fragments stored, want %d", len(frags), len(m.clusters))
			}
			for i, f := range frags {
				sum := sha256.Sum256(m.clusterBytes(i))
				if f.SHA256 != hex.EncodeToString(sum[:]) || f.Timecode != int64(m.clusters[i].tc) || f.Frames != len(m.clusters[i].blocks) ||
					!f.KeyFrameFirst || f.Connection != 1 || !f.Persisted || f.Bytes != len(m.clusterBytes(i)) {
					t.Fatalf("fragment %d: %+v", i, f)
				}
				if i > 0 && f.FragmentNumber <= frags[i-1].FragmentNumber {
					t.Fatalf("fragment numbers not increasing: %s then %s", frags[i-1].FragmentNumber, f.FragmentNumber)
				}
			}
			if n := ffprobeFrames(t, frags[0].File); n != m.frames() {
				t.Fatalf("stored file has %d frames, want %d", n, m.frames())
			}
			// fragments.jsonl carries the same records.
			b, err := os.ReadFile(filepath.Join(filepath.Dir(frags[0].File), "fragments.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
			if len(lines) != len(frags) {
				t.Fatalf("%d lines in fragments.jsonl", len(lines))
			}
			var first kvslocal.Fragment
			if err := json.Unmarshal(lines[0], &first); err != nil || first.SHA256 != frags[0].SHA256 {
				t.Fatalf("jsonl line 0: %s (%v)", lines[0], err)
			}
		})
	}
}

// The raw ffmpeg file (cluster timecodes from 0, Cues and all) streamed as
// is with RELATIVE timecodes.
func TestPutMediaRawFFmpegRelative(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "cam", 0)
	m, raw := ffmpegMovie(t)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	c, resp := openPutMedia(t, srv, "cam", pmOpts{timecodeType: "RELATIVE", start: strconv.FormatInt(start.Unix(), 10) + ".000"})
	if resp != nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := c.send(raw); err != nil {
		t.Fatal(err)
	}
	c.closeBody()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		if a.EventType == "PERSISTED" || a.EventType == "ERROR" {
			t.Fatalf("no retention: want no PERSISTED and no ERROR, got %v", describe(acks))
		}
	}
	frags := srv.Fragments("cam")
	if len(frags) != len(m.clusters) {
		t.Fatalf("%d fragments, want %d (%v)", len(frags), len(m.clusters), describe(acks))
	}
	for i, f := range frags {
		if want := start.UnixMilli() + int64(m.clusters[i].tc); f.ProducerTime != want {
			t.Fatalf("fragment %d producer time %d, want %d", i, f.ProducerTime, want)
		}
	}
}

// A file-style Matroska (known-size Segment, SeekHead, Cues, Void) is
// accepted too; the stored copy still plays.
func TestPutMediaKnownSizeSegment(t *testing.T) {
	m, _ := ffmpegMovie(t)
	ff, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg is needed: apt-get install ffmpeg")
	}
	out := filepath.Join(t.TempDir(), "file.mkv")
	if b, err := exec.Command(ff, "-nostdin", "-v", "error", "-i", filepath.Join(tmpRoot, "ff.mkv"), "-c", "copy", "-f", "matroska", out).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg remux: %v %s", err, b)
	}
	body, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", 0)
	c := mustOpen(t, srv, "s", pmOpts{timecodeType: "RELATIVE"})
	go func() { _ = c.send(body); c.closeBody() }()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	frags := srv.Fragments("s")
	frames := 0
	for _, f := range frags {
		frames += f.Frames
	}
	if frames != m.frames() {
		t.Fatalf("%d frames in %d fragments, want %d; %v", frames, len(frags), m.frames(), describe(acks))
	}
	if n := ffprobeFrames(t, frags[0].File); n != m.frames() {
		t.Fatalf("stored file: %d frames", n)
	}
}
