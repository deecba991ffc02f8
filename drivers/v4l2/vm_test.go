//go:build vmtest && linux && cgo

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

	"github.com/kvscamd/kvscamd/drivers/clock"
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
