//go:build linux

package v4l2

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/media"
)

func TestMissingDeviceIsRetried(t *testing.T) {
	src, err := newSource(Config{Device: "/dev/video-kvscamd-absent", Width: 320, Height: 240, FPS: 30,
		Clock: clock.System{Mode: clock.SyncTrust}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, openDevice)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, make(chan media.Frame, 1)) }()
	deadline := time.Now().Add(30 * time.Second)
	for src.Stats().Errors < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("errors counted: %d", src.Stats().Errors)
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

func TestNotAV4L2Device(t *testing.T) {
	src, err := New(Config{Device: "/dev/null", Width: 320, Height: 240, FPS: 30, Clock: clock.System{Mode: clock.SyncTrust}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = src.Run(ctx, make(chan media.Frame, 1))
	if err == nil || !strings.Contains(err.Error(), "/dev/null") || !strings.Contains(err.Error(), "not a V4L2 device") {
		t.Fatalf("Run = %v, want a clear error naming /dev/null", err)
	}
}

func TestDescribeAndKeyFrameRequest(t *testing.T) {
	src, err := New(Config{Device: "/dev/video7", Width: 320, Height: 240, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	if got := src.Describe(); got != "v4l2 /dev/video7" {
		t.Fatalf("Describe = %q", got)
	}
	src.RequestKeyFrame() // must not block or panic without a running capture
	if !src.(*Source).keyReq.Load() {
		t.Fatal("key frame request not recorded")
	}
}
