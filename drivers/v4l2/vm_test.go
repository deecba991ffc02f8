//go:build vmtest && linux

// These tests need real V4L2 devices and run inside the test VM (see
// vmtest/): /dev/video0 is vivid (raw formats only), /dev/video10 is a
// v4l2loopback device fed by vmtest/writer.
package v4l2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/drivers/v4l2/uapi"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/media"
)

func vmEnv(t *testing.T, key, def string) string {
	t.Helper()
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func readClip(t *testing.T, path string) [][][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][][]byte
	r := h264.NewReader(bytes.NewReader(data))
	for {
		au, err := r.Next()
		if errors.Is(err, io.EOF) {
			return aus
		}
		if err != nil {
			t.Fatal(err)
		}
		aus = append(aus, au)
	}
}

func TestVMLoopbackH264FrameExact(t *testing.T) {
	clip := vmEnv(t, "KV_CLIP", "/clip.h264")
	dev := vmEnv(t, "KV_LOOP_DEV", "/dev/video10")
	want := readClip(t, clip)

	writer := exec.Command(vmEnv(t, "KV_WRITER", "/writer"), "-dev", dev, "-clip", clip, "-fps", "30")
	writer.Stderr = os.Stderr
	toWriter, err := writer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	fromWriter, err := writer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	defer writer.Wait()    //nolint:errcheck
	defer toWriter.Close() //nolint:errcheck
	lines := bufio.NewScanner(fromWriter)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "primed") {
		t.Fatalf("writer did not prime the device: %q", lines.Text())
	}
	// Once primed, the loopback offers H.264; Probe (kvscamd check) sees it.
	if info, err := Probe(dev); err != nil || !info.H264 || !info.Capture {
		t.Fatalf("Probe(%s) = %+v, %v; want a capture device offering H.264", dev, info, err)
	}

	src, err := newSource(Config{
		Device: dev, Width: 320, Height: 240, FPS: 30, Bitrate: 1_000_000,
		KeyframeInterval: time.Second, Profile: "high",
		Clock: clock.System{Mode: clock.SyncTrust},
		Log:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}, openDevice)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, len(want)+8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()

	deadline := time.After(120 * time.Second)
	var got []media.Frame
	for len(got) < len(want) {
		select {
		case f := <-out:
			got = append(got, f)
			if _, err := io.WriteString(toWriter, "next\n"); err != nil {
				t.Fatal(err)
			}
		case err := <-done:
			t.Fatalf("Run ended after %d frames: %v", len(got), err)
		case <-deadline:
			t.Fatalf("captured %d of %d access units; stats %+v", len(got), len(want), src.Stats())
		}
	}
	if !lines.Scan() || lines.Text() != "done" {
		t.Fatalf("writer: %q", lines.Text())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	keys := 0
	for i, f := range got {
		w := want[i]
		if f.Seq != uint64(i) {
			t.Fatalf("frame %d: seq %d", i, f.Seq)
		}
		if len(f.NALUs) != len(w) {
			t.Fatalf("frame %d: %d NAL units, clip has %d", i, len(f.NALUs), len(w))
		}
		for j := range w {
			if !bytes.Equal(f.NALUs[j], w[j]) {
				t.Fatalf("frame %d NAL unit %d differs from the clip", i, j)
			}
		}
		if f.Key != h264.IsIDR(w) {
			t.Fatalf("frame %d: key %v, clip says %v", i, f.Key, h264.IsIDR(w))
		}
		if f.Key {
			keys++
		}
		if i > 0 && (!f.Time.After(got[i-1].Time) || f.Mono <= got[i-1].Mono) {
			t.Fatalf("frame %d: time %v / mono %v not after %v / %v", i, f.Time, f.Mono, got[i-1].Time, got[i-1].Mono)
		}
	}
	if keys == 0 {
		t.Fatal("no key frame found")
	}
	st := src.Stats()
	if st.Dropped != 0 || st.Frames != uint64(len(want)) {
		t.Fatalf("stats %+v, want %d frames and no drops", st, len(want))
	}
	t.Logf("captured %d access units (%d key frames) byte-exact, %d bytes, span %v",
		len(got), keys, st.Bytes, got[len(got)-1].Time.Sub(got[0].Time))
}

// TestVMWaitsForProducerAndReopensAfterStall starts capturing before the
// device is usable (v4l2loopback lists no formats until its producer has
// written), so the driver must retry; then the producer goes quiet, so the
// driver must notice the stall and reopen, without delivering any frame
// twice.
func TestVMWaitsForProducerAndReopensAfterStall(t *testing.T) {
	clip := vmEnv(t, "KV_CLIP", "/clip.h264")
	dev := vmEnv(t, "KV_LOOP_DEV2", "/dev/video11")
	want := readClip(t, clip)

	logs := &syncBuf{}
	src, err := newSource(Config{
		Device: dev, Width: 320, Height: 240, FPS: 30,
		Clock:      clock.System{Mode: clock.SyncTrust},
		Log:        slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, StallTimeout: time.Second,
	}, openDevice)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, len(want)+8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "open attempts on a device without a producer", func() bool { return src.Stats().Errors >= 2 })

	writer := exec.Command(vmEnv(t, "KV_WRITER", "/writer"), "-dev", dev, "-clip", clip, "-fps", "30")
	writer.Stderr = os.Stderr
	toWriter, _ := writer.StdinPipe()
	fromWriter, _ := writer.StdoutPipe()
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	defer writer.Wait()    //nolint:errcheck
	defer toWriter.Close() //nolint:errcheck
	lines := bufio.NewScanner(fromWriter)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "primed") {
		t.Fatalf("writer did not prime the device: %q", lines.Text())
	}
	first := <-out
	if !bytes.Equal(first.NALUs[len(first.NALUs)-1], want[0][len(want[0])-1]) {
		t.Fatal("first frame after the producer appeared is not the clip's first")
	}
	io.WriteString(toWriter, "next\n") //nolint:errcheck
	got := 1
	deadline := time.After(120 * time.Second)
	for got < len(want) {
		select {
		case <-out:
			got++
			io.WriteString(toWriter, "next\n") //nolint:errcheck
		case <-deadline:
			t.Fatalf("captured %d of %d", got, len(want))
		}
	}
	errsBefore := src.Stats().Errors
	// The producer stays open but writes nothing more: a stall. Two
	// reopens prove the driver keeps recovering and delivers nothing
	// twice.
	waitFor(t, "two reopens after the stall", func() bool { return src.Stats().Errors >= errsBefore+2 })
	if !strings.Contains(logs.String(), "no frame for") {
		t.Fatal("stall not reported in the log")
	}
	if st := src.Stats(); st.Frames != uint64(len(want)) || st.Dropped != 0 {
		t.Fatalf("stats %+v: want exactly %d frames, none twice", st, len(want))
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition
	}
}

func TestVMVividOffersNoH264(t *testing.T) {
	dev := vmEnv(t, "KV_VIVID_DEV", "/dev/video0")
	src, err := New(Config{Device: dev, Width: 640, Height: 480, FPS: 30,
		Clock: clock.System{Mode: clock.SyncTrust}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = src.Run(ctx, make(chan media.Frame, 1))
	if !errors.Is(err, ErrNoH264) {
		t.Fatalf("Run = %v, want ErrNoH264", err)
	}
	for _, s := range []string{dev, "vivid", "YUYV"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}
	t.Logf("error: %v", err)

	// Probe, which kvscamd check uses, sees the same.
	info, err := Probe(dev)
	if err != nil || info.H264 || !info.Capture || info.Driver != "vivid" || !slices.Contains(info.Formats, "YUYV") {
		t.Fatalf("Probe(%s) = %+v, %v; want a vivid capture device with YUYV and no H.264", dev, info, err)
	}
}

// TestVMVividIoctls runs the ioctls that v4l2loopback does not exercise
// against vivid, whose buffers are videobuf2's like a real camera's:
// controls with their ranges, the frame interval, and streaming raw
// frames with the kernel's timestamps and sequence numbers.
func TestVMVividIoctls(t *testing.T) {
	dev := vmEnv(t, "KV_VIVID_DEV", "/dev/video0")
	fd, err := openNode(dev)
	if err != nil {
		t.Fatal(err)
	}
	d := &devSession{fd: fd}
	defer d.close()

	q, err := queryControl(fd, uapi.V4L2_CID_BRIGHTNESS)
	if err != nil {
		t.Fatal(err)
	}
	if uapi.String(q.Name[:]) != "Brightness" || q.Minimum >= q.Maximum {
		t.Fatalf("brightness control: %+v", q)
	}
	want := q.Minimum + (q.Maximum-q.Minimum)/4
	if err := setControl(fd, &q, want); err != nil {
		t.Fatal(err)
	}
	c := uapi.Control{ID: uapi.V4L2_CID_BRIGHTNESS}
	if err := ioctl(fd, uapi.VIDIOC_G_CTRL, unsafe.Pointer(&c)); err != nil || c.Value != want {
		t.Fatalf("VIDIOC_G_CTRL brightness = %d, %v; want %d", c.Value, err, want)
	}
	if err := setControl(fd, &q, q.Maximum+1); err == nil || !strings.Contains(err.Error(), "outside the device's range") {
		t.Fatalf("out-of-range value: %v", err)
	}
	if _, err := queryControl(fd, uapi.V4L2_CID_MPEG_VIDEO_BITRATE); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("vivid has no encoder, yet VIDIOC_QUERYCTRL bitrate = %v", err)
	}

	parm := uapi.StreamParm{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
	if err := ioctl(fd, uapi.VIDIOC_G_PARM, unsafe.Pointer(&parm)); err != nil {
		t.Fatal(err)
	}
	if parm.Capture.Capability&uapi.V4L2_CAP_TIMEPERFRAME == 0 {
		t.Fatalf("vivid does not take a frame interval: %+v", parm.Capture)
	}
	parm.Capture.TimePerFrame = uapi.Fract{Numerator: 1, Denominator: 15}
	if err := ioctl(fd, uapi.VIDIOC_S_PARM, unsafe.Pointer(&parm)); err != nil {
		t.Fatal(err)
	}
	set := parm.Capture.TimePerFrame
	parm = uapi.StreamParm{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
	if err := ioctl(fd, uapi.VIDIOC_G_PARM, unsafe.Pointer(&parm)); err != nil || parm.Capture.TimePerFrame != set || set.Denominator == 0 {
		t.Fatalf("frame interval set %+v, read back %+v (%v)", set, parm.Capture.TimePerFrame, err)
	}

	f := uapi.Format{Type: uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE}
	*f.Pix() = uapi.PixFormat{Width: 320, Height: 240, PixelFormat: fourccCode("YUYV"), Field: uapi.V4L2_FIELD_NONE}
	if err := ioctl(fd, uapi.VIDIOC_S_FMT, unsafe.Pointer(&f)); err != nil {
		t.Fatal(err)
	}
	pix := *f.Pix()
	if pix.PixelFormat != fourccCode("YUYV") || pix.SizeImage == 0 {
		t.Fatalf("VIDIOC_S_FMT gave %+v", pix)
	}
	if err := d.mapBuffers(dev, 3); err != nil {
		t.Fatal(err)
	}
	for i := range d.bufs {
		if err := d.queue(uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	typ := int32(uapi.V4L2_BUF_TYPE_VIDEO_CAPTURE)
	if err := ioctl(fd, uapi.VIDIOC_STREAMON, unsafe.Pointer(&typ)); err != nil {
		t.Fatal(err)
	}
	d.streaming = true
	d.pfd = []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	const frames = 4
	var last buffer
	for n := 0; n < frames; {
		before := monoNow(t)
		b, ok, err := d.next(10 * time.Second)
		if err != nil || !ok {
			t.Fatalf("frame %d: ok %v, %v", n, ok, err)
		}
		if b.flags&uapi.V4L2_BUF_FLAG_TIMESTAMP_MASK != uapi.V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC {
			t.Fatalf("frame %d: flags %#x: timestamp not marked monotonic", n, b.flags)
		}
		// vivid stamps a frame with its nominal end, which can be a
		// frame period ahead of the clock when it is delivered.
		if after := monoNow(t); b.ts < before-time.Second || b.ts > after+time.Second {
			t.Fatalf("frame %d: timestamp %v, CLOCK_MONOTONIC %v..%v", n, b.ts, before, after)
		}
		if len(b.data) != int(pix.SizeImage) {
			t.Fatalf("frame %d: %d bytes, format says %d", n, len(b.data), pix.SizeImage)
		}
		if n > 0 && (b.seq <= last.seq || b.ts <= last.ts) {
			t.Fatalf("frame %d: seq %d ts %v after seq %d ts %v", n, b.seq, b.ts, last.seq, last.ts)
		}
		last = b
		n++
		if err := d.release(b); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d YUYV frames from %d mapped buffers, last seq %d at %v", frames, len(d.bufs), last.seq, last.ts)
}

func fourccCode(s string) uint32 {
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func monoNow(t *testing.T) time.Duration {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
