package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

func TestMuxClips(t *testing.T) {
	start := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, clip := range testclips.All {
		t.Run(clip.Name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.mkv")
			code, stdout, stderr := runCLI(t, "mux", "-i", clip.Path(), "-o", out, "-fps", "30",
				"-start", start.Format(time.RFC3339), "-fragment", "1s")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "frames in") {
				t.Fatalf("stdout %q", stdout)
			}
			st := mkvcheck.Check(t, out, mkvcheck.Expect{Frames: clip.Decodable, Clusters: clip.IDRs, Source: clip.Path()})
			// Frame k is at start + k/fps; the first kept frame is the
			// first IDR.
			want := start.Add(time.Duration(clip.LeadingNonIDR) * time.Second / 30).UnixMilli()
			if st.Clusters[0].Timecode != want {
				t.Fatalf("first cluster at %d, want %d", st.Clusters[0].Timecode, want)
			}
		})
	}
}

func TestMuxErrors(t *testing.T) {
	dir := t.TempDir()
	notH264 := filepath.Join(dir, "x.h264")
	os.WriteFile(notH264, []byte("hello, not video"), 0o644)
	clip := testclips.Get("high-aud.h264").Path()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-o", "x.mkv", "-fps", "30"}, exitUsage, "-i is required"},
		{[]string{"-i", clip, "-fps", "30"}, exitUsage, "-o is required"},
		{[]string{"-i", clip, "-o", "x.mkv"}, exitUsage, "-fps is required"},
		{[]string{"-i", clip, "-o", "x.mkv", "-fps", "30", "-fragment", "11s"}, exitUsage, "KVS fragment limit"},
		{[]string{"-i", clip, "-o", "x.mkv", "-fps", "30", "-start", "yesterday"}, exitUsage, "RFC 3339"},
		{[]string{"-i", filepath.Join(dir, "missing.h264"), "-o", "x.mkv", "-fps", "30"}, exitFailure, "no such file"},
		{[]string{"-i", notH264, "-o", "x.mkv", "-fps", "30"}, exitFailure, "h264_mp4toannexb"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, append([]string{"mux"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("mux %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
	if _, err := os.Stat("x.mkv"); err == nil {
		t.Error("a failed mux left x.mkv behind")
	}
}
