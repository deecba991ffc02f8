package exec

import (
	"bytes"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/media"
)

// stepStats summarises the intervals between consecutive frame times.
type stepStats struct {
	N             int
	Outside       float64 // fraction of steps outside [25 ms, 42 ms]
	Min, Max, P99 time.Duration
}

func (s stepStats) String() string {
	return fmt.Sprintf("%d steps, %.1f %% outside 25–42 ms, min %v, max %v, p99 %v", s.N, 100*s.Outside, s.Min, s.Max, s.P99)
}

func steps(times []time.Duration) stepStats {
	var d []time.Duration
	out := 0
	for i := 1; i < len(times); i++ {
		s := times[i] - times[i-1]
		d = append(d, s)
		if s < 25*time.Millisecond || s > 42*time.Millisecond {
			out++
		}
	}
	if len(d) == 0 {
		return stepStats{}
	}
	slices.Sort(d)
	return stepStats{N: len(d), Outside: float64(out) / float64(len(d)), Min: d[0], Max: d[len(d)-1], P99: d[len(d)*99/100]}
}

// burstyEncoder is the pipe the smoothing is for: ffmpeg paced by -re at
// 30 fps, with its default muxer buffering (no -flush_packets), writing
// raw H.264 to stdout. It runs 5 s longer than the test reads, because at
// its end x264 flushes its delayed frames at once, which no live camera
// does.
func burstyEncoder(ffmpeg string, seconds int) []string {
	return []string{ffmpeg, "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-t", strconv.Itoa(seconds + 5), "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-bf", "0", "-f", "h264", "-"}
}

// TestFrameStepsFromPipe runs a real ffmpeg at 30 fps through the exec
// source and compares the frame times it delivers with the arrival times
// on the pipe: far fewer steps outside 25–42 ms (a loaded machine stalls
// ffmpeg itself, which no smoothing can hide entirely, hence the margin
// relative to the arrivals of the same run), strictly increasing, and a
// file ffmpeg decodes without reporting non-monotonic timestamps.
func TestFrameStepsFromPipe(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	seconds := 10
	if s := os.Getenv("KVSCAMD_STEPS_SECONDS"); s != "" { // longer runs for measurements
		seconds, _ = strconv.Atoi(s)
	}
	s, err := newSource(Config{Command: burstyEncoder(ffmpeg, seconds), FPS: 30, Clock: clock.System{Mode: clock.SyncTrust}, MinBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var raw []time.Duration
	s.arrived = func(d time.Duration) { mu.Lock(); raw = append(raw, d); mu.Unlock() }
	out := make(chan media.Frame, 1024)
	stop := startRun(t, s, out)
	want := seconds * 30
	got := receive(t, out, want, time.Duration(seconds+20)*time.Second)
	stop()
	var monos []time.Duration
	for i, f := range got {
		if i > 0 && f.Mono <= monos[i-1] {
			t.Fatalf("frame %d at %v, not after %v", i, f.Mono, monos[i-1])
		}
		monos = append(monos, f.Mono)
	}
	mu.Lock()
	before := steps(raw[:want])
	mu.Unlock()
	after := steps(monos)
	t.Logf("ffmpeg -re at 30 fps through a pipe:\n  arrival times:  %v\n  exec source:    %v", before, after)
	if os.Getenv("KVSCAMD_STEPS_DUMP") != "" {
		for i := range monos {
			fmt.Printf("%d %d %d\n", i, raw[i], monos[i])
		}
	}
	if limit := 0.03 + before.Outside/4; after.Outside > limit {
		t.Errorf("%.1f %% of the steps outside 25–42 ms, want at most %.1f %%", 100*after.Outside, 100*limit)
	}

	path := filepath.Join(t.TempDir(), "out.mkv")
	frames := writeFragments(t, path, got)
	mkvcheck.Check(t, path, mkvcheck.Expect{Frames: frames})

	// The decode the pipe's users run, with ffmpeg's default timestamp
	// handling, which rounds to the frame rate and complains about
	// frames that land in one slot: compared with the same frames
	// stamped at arrival. A stall of the encoder longer than the frame
	// clock's window (seen under heavy load) can still cost a slot or
	// two, hence a ratio rather than zero.
	rawFrames := slices.Clone(got)
	mu.Lock()
	for i := range rawFrames {
		rawFrames[i].Mono = raw[i]
		rawFrames[i].Time = time.Unix(0, int64(raw[i]))
	}
	mu.Unlock()
	for i := range got {
		got[i].Time = time.Unix(0, int64(got[i].Mono))
	}
	rawPath := filepath.Join(t.TempDir(), "raw.mkv")
	writeFragments(t, rawPath, rawFrames)
	writeFragments(t, path, got)
	afterWarn, beforeWarn := nonMonotonic(t, ffmpeg, path), nonMonotonic(t, ffmpeg, rawPath)
	t.Logf("ffmpeg default decode, non-monotonic timestamp reports: %d stamped at arrival, %d smoothed", beforeWarn, afterWarn)
	if afterWarn > 0 && afterWarn*4 > beforeWarn {
		t.Errorf("ffmpeg reports %d non-monotonic timestamps in the smoothed file, %d at arrival", afterWarn, beforeWarn)
	}
}

// nonMonotonic decodes path with ffmpeg's defaults and counts its reports
// of timestamps that do not increase.
func nonMonotonic(t *testing.T, ffmpeg, path string) int {
	t.Helper()
	var stderr bytes.Buffer
	cmd := osexec.Command(ffmpeg, "-nostdin", "-v", "warning", "-i", path, "-f", "null", "-")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decode %s: %v\n%s", path, err, stderr.String())
	}
	n := 0
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "monoton") {
			n++
			if k := strings.Index(line, "repeated "); k >= 0 {
				var more int
				fmt.Sscanf(line[k:], "repeated %d", &more)
				n += more - 1
			}
		}
	}
	return n
}

// writeFragments fragments frames into an MKV file at path and returns
// how many frames it holds.
func writeFragments(t *testing.T, path string, frs []media.Frame) int {
	t.Helper()
	frag := fragmenter.New(fragmenter.Config{})
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	fw := fragmenter.NewFileWriter(file)
	for _, f := range frs {
		if fg, ok := frag.Push(f); ok {
			if err := fw.WriteFragment(&fg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if fg, ok := frag.Flush(); ok {
		if err := fw.WriteFragment(&fg); err != nil {
			t.Fatal(err)
		}
	}
	return fw.Frames
}

// TestEncoderTimestamps has ffmpeg write, next to the H.264 on stdout,
// each frame's timestamp in the timecode-v2 form rpicam-vid --save-pts
// writes (ffmpeg's mkvtimestamp_v2 muxer) to the FIFO the source makes:
// frames are then stamped with the encoder's times, exact 1/30 s steps.
func TestEncoderTimestamps(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	fifo := filepath.Join(t.TempDir(), "pts")
	cmd := []string{ffmpeg, "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "8",
		"-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "0", "-flush_packets", "1",
		"-f", "tee", "-map", "0:v", "[f=h264]pipe\\:1|[f=mkvtimestamp_v2]" + fifo}
	log, logs := testLogger(t)
	s, err := newSource(Config{Command: cmd, FPS: 30, PTSFile: fifo, Clock: clock.System{Mode: clock.SyncTrust}, Log: log, MinBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var raw []time.Duration
	s.arrived = func(d time.Duration) { mu.Lock(); raw = append(raw, d); mu.Unlock() }
	out := make(chan media.Frame, 1024)
	stop := startRun(t, s, out)
	got := receive(t, out, 180, 30*time.Second)
	stop()
	if strings.Contains(logs.String(), "no timestamp") {
		t.Fatalf("frames without an encoder timestamp:\n%s", logs.String())
	}
	// After the first second, in which the latency estimate settles on
	// the encoder's smallest latency, steps are the encoder's.
	// The timecode-v2 lines are whole milliseconds: 33 or 34 ms, give or
	// take the latency estimate's 4 ms, except where a frame came
	// through faster than ever before (it is not stamped after it arrived).
	odd := 0
	for i := 31; i < len(got); i++ {
		step := got[i].Mono - got[i-1].Mono
		if step < 29*time.Millisecond || step > 38*time.Millisecond {
			if odd++; odd > len(got)/10 {
				t.Fatalf("frame %d: step %v with encoder timestamps, %d such", i, step, odd)
			}
		}
		mu.Lock()
		a := raw[i]
		mu.Unlock()
		if got[i].Mono > a || a-got[i].Mono > time.Second {
			t.Fatalf("frame %d stamped %v, arrived %v", i, got[i].Mono, a)
		}
	}
	mu.Lock()
	t.Logf("encoder timestamps, after the first second: arrival %v; stamped %v", steps(raw[30:len(got)]), steps(monoOf(got[30:])))
	mu.Unlock()
}

func monoOf(frs []media.Frame) []time.Duration {
	out := make([]time.Duration, len(frs))
	for i, f := range frs {
		out[i] = f.Mono
	}
	return out
}
