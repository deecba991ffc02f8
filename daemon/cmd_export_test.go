package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// TestRunThenExport captures a clip to its end through the real fragmenter
// into the ring, then exports all of it and a time range of it.
func TestRunThenExport(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	cfg, state := writeRunConfig(t, clip, false, "")
	// The file ends after three fragments; the last one is stored when the
	// source ends.
	runUntil(t, cfg, state, func(st ring.Stats) bool { return st.Fragments == 3 })
	out := filepath.Join(t.TempDir(), "all.mkv")
	code, stdout, errOut := runCLI(t, "export", "-config", cfg, "-stream", "cam-test", "-o", out)
	if code != 0 || !strings.Contains(stdout, "150 frames in 3 fragments") {
		t.Fatalf("export: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: clip.Decodable, Clusters: 3, Source: clip.Path()})

	// The middle fragment: [start+2s, start+4s) holds frames 60..119.
	st, err := ringStats(t, filepath.Join(state, "cam-test"))
	if err != nil {
		t.Fatal(err)
	}
	from, to := st.Oldest.Add(2*time.Second), st.Oldest.Add(4*time.Second)
	mid := filepath.Join(t.TempDir(), "mid.mkv")
	code, stdout, errOut = runCLI(t, "export", "-config", cfg, "-stream", "cam-test",
		"-from", from.Format(time.RFC3339Nano), "-to", to.Format(time.RFC3339Nano), "-o", mid)
	if code != 0 || !strings.Contains(stdout, "60 frames in 1 fragments") {
		t.Fatalf("range export: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	mkvcheck.Check(t, mid, mkvcheck.Expect{Frames: 60, Clusters: 1, Source: clip.Path(), SkipSource: 60})

	// A second run appends to the same ring. The replay is faster than real
	// time, so the first run's fragments reach seconds into the future; the
	// second run's still start after them (the fragmenter starts after the
	// newest stored timecode), so export leaves nothing out.
	stderr := runUntil(t, cfg, state, func(st ring.Stats) bool { return st.Fragments >= 5 })
	var second int
	if m := regexp.MustCompile(`msg="stream stopped" stream=cam-test frames=(\d+)`).FindStringSubmatch(stderr); m != nil {
		second, _ = strconv.Atoi(m[1])
	}
	code, stdout, _ = runCLI(t, "export", "-config", cfg, "-stream", "cam-test", "-o", out)
	var frames, frags int
	fmt.Sscanf(strings.TrimPrefix(stdout, out+": "), "%d frames in %d fragments", &frames, &frags)
	if code != 0 || second == 0 || frames != clip.Frames+second || strings.Contains(stdout, "left out") {
		t.Fatalf("export after two runs of %d and %d frames: exit %d, stdout %q", clip.Frames, second, code, stdout)
	}
	mkvcheck.Check(t, out, mkvcheck.Expect{Frames: frames, Clusters: frags})
}

func TestExportErrors(t *testing.T) {
	clip := testclips.Get("baseline-360p.h264")
	cfg, state := writeRunConfig(t, clip, false, "")
	out := filepath.Join(t.TempDir(), "out.mkv")

	// Before anything was captured.
	code, _, errOut := runCLI(t, "export", "-config", cfg, "-stream", "cam-test", "-o", out)
	if code != exitFailure || !strings.Contains(errOut, "no ring buffer yet") {
		t.Fatalf("export before run: exit %d, stderr %q", code, errOut)
	}
	runUntil(t, cfg, state, func(st ring.Stats) bool { return st.Fragments == 1 })
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown stream", []string{"-stream", "cam-9", "-o", out}, exitUsage, `no stream "cam-9"` /* and names the configured ones: */},
		{"no stream", []string{"-o", out}, exitUsage, "configured streams in"},
		{"no output", []string{"-stream", "cam-test"}, exitUsage, "-o is required"},
		{"bad from", []string{"-stream", "cam-test", "-from", "yesterday", "-o", out}, exitUsage, "RFC 3339"},
		{"from after to", []string{"-stream", "cam-test", "-from", "2026-01-02T00:00:00Z", "-to", "2026-01-01T00:00:00Z", "-o", out}, exitUsage, "is not before"},
		{"empty range", []string{"-stream", "cam-test", "-from", "2001-01-01T00:00:00Z", "-to", "2001-01-02T00:00:00Z", "-o", out}, exitFailure, "no fragments of stream cam-test between 2001-01-01T00:00:00Z and 2001-01-02T00:00:00Z; the ring holds"},
	}
	for _, c := range cases {
		code, _, errOut := runCLI(t, append([]string{"export", "-config", cfg}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d (want %d), stderr %q (want %q)", c.name, code, c.code, errOut, c.want)
		}
		if c.name == "unknown stream" && !strings.Contains(errOut, "configured streams: cam-test") {
			t.Errorf("unknown stream: stderr %q does not list the configured streams", errOut)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("%s: a failed export left %s behind", c.name, out)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".export-*"))
	if len(leftovers) > 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}
