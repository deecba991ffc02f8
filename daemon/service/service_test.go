package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

func testConfig(t *testing.T, names ...string) *config.Config {
	t.Helper()
	clip := testclips.Get("high-aud.h264")
	c := config.Default()
	c.ThingName, c.Region, c.StateDir = "cam-svc", "eu-west-1", t.TempDir()
	c.Credentials.Source = config.CredentialsDefault
	c.ClockSync = config.ClockSyncTrust // independent of the machine's NTP
	c.Streams = nil
	for _, n := range names {
		st := config.DefaultStream()
		st.Name, st.Driver, st.Path, st.Realtime, st.Loop, st.FPS = n, config.DriverFile, clip.Path(), true, true, clip.FPS
		st.RingSize = 32 * config.MiB
		c.Streams = append(c.Streams, st)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

func startService(t *testing.T, c *config.Config) *Service {
	t.Helper()
	svc, err := New(c, Options{CaptureOnly: true, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return svc
}

func waitStatus(t *testing.T, svc *Service, what string, cond func(status.Status) bool) status.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := svc.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition with a deadline
	}
}

func names(st status.Status) []string {
	var n []string
	for _, s := range st.Streams {
		n = append(n, s.Name)
	}
	return n
}

func TestCommandsRefused(t *testing.T) {
	svc := startService(t, testConfig(t, "cam-1"))
	on := true
	for _, tc := range []struct {
		cmd  status.Command
		code string
		says string
	}{
		{status.Command{}, status.CodeBadRequest, "no op"},
		{status.Command{Op: "dance"}, status.CodeUnknownOp, "capture"},
		{status.Command{Op: status.OpCapture, Stream: "cam-1"}, status.CodeBadArgument, "on or off"},
		{status.Command{Op: status.OpCapture, Stream: "cam-9", On: &on}, status.CodeUnknownStream, "cam-1"},
		{status.Command{Op: status.OpCapture, On: &on}, status.CodeBadArgument, "no stream given"},
		{status.Command{Op: status.OpUpload, Stream: "cam-1", From: time.Unix(100, 0), To: time.Unix(50, 0)}, status.CodeBadArgument, "must be after"},
		{status.Command{Op: status.OpUpload, Stream: "cam-1"}, status.CodeUnavailable, "cannot upload"},
		{status.Command{Op: status.OpReload}, status.CodeUnavailable, "without a configuration file"},
	} {
		_, err := svc.Do(context.Background(), tc.cmd)
		if status.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: %v (code %s), want %s saying %q", tc.cmd, err, status.CodeOf(err), tc.code, tc.says)
		}
	}
	if res, err := svc.Do(context.Background(), status.Command{Op: status.OpPing}); err != nil || res.Message != "pong" {
		t.Fatalf("ping: %+v %v", res, err)
	}
	res, err := svc.Do(context.Background(), status.Command{Op: status.OpStatus})
	if err != nil || res.Status == nil || res.Status.Version != "test" || !slices.Equal(names(*res.Status), []string{"cam-1"}) {
		t.Fatalf("status: %+v %v", res, err)
	}
}

// Reload: an invalid file changes nothing; streams can be added and
// removed; a restart of one stream keeps the other running.
func TestReload(t *testing.T) {
	c := testConfig(t, "cam-1", "cam-2")
	svc := startService(t, c)
	waitStatus(t, svc, "fragments on both", func(st status.Status) bool {
		return len(st.Streams) == 2 && st.Streams[0].FragmentsStored >= 1 && st.Streams[1].FragmentsStored >= 1
	})

	bad := testConfig(t, "cam-1", "cam-2")
	bad.StateDir = c.StateDir
	bad.Streams[0].FPS = 0
	bad.Streams[1].Width = -1
	_, err := svc.Reload(bad)
	if status.CodeOf(err) != status.CodeInvalidConfig || !strings.Contains(err.Error(), "fps") || !strings.Contains(err.Error(), "width") {
		t.Fatalf("invalid reload: %v", err)
	}
	if got := svc.Status().Streams[0]; got.State != "capturing" {
		t.Fatalf("the refused reload disturbed cam-1: %+v", got)
	}

	next := testConfig(t, "cam-1", "cam-3")
	next.StateDir = c.StateDir
	next.LogLevel = config.LogDebug
	next.Region = "us-east-1"
	next.Streams[0].RingSize = 16 * config.MiB
	res, err := svc.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	effects := map[string]string{}
	for _, ch := range res.Changes {
		effects[ch.Stream+"/"+ch.Key] = ch.Effect
	}
	want := map[string]string{
		"/log_level":      "live",
		"/region":         EffectDaemonRestart,
		"cam-2/stream":    EffectStreamRemoved,
		"cam-3/stream":    EffectStreamAdded,
		"cam-1/ring_size": EffectRestarted,
	}
	for k, v := range want {
		if effects[k] != v {
			t.Errorf("change %s: effect %q, want %q (all: %v)", k, effects[k], v, effects)
		}
	}
	st := waitStatus(t, svc, "cam-3 capturing and cam-1 restarted", func(st status.Status) bool {
		return len(st.Streams) == 2 && st.Streams[1].FragmentsStored >= 1 && st.Streams[0].RingBytesCapacity == 16<<20
	})
	if !slices.Equal(names(st), []string{"cam-1", "cam-3"}) {
		t.Fatalf("streams after reload: %v", names(st))
	}
	svc.mu.Lock()
	region := svc.cfg.Region
	svc.mu.Unlock()
	if region != "eu-west-1" {
		t.Fatalf("region changed to %s without a restart", region)
	}
	// A restart by command.
	if _, err := svc.Do(context.Background(), status.Command{Op: status.OpRestart, Stream: "cam-3"}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, svc, "cam-3 capturing after its restart", func(st status.Status) bool {
		return len(st.Streams) == 2 && st.Streams[1].FragmentsStored >= 1
	})
}

func TestNewRefusesInvalid(t *testing.T) {
	c := testConfig(t, "cam-1")
	c.Streams[0].Name = ".."
	_, err := New(c, Options{CaptureOnly: true})
	var ps config.Problems
	if !errors.As(err, &ps) || !strings.Contains(err.Error(), `".."`) {
		t.Fatalf("New with stream name \"..\": %v", err)
	}
}

// set applies live settings with the reload's validation, refuses bad
// ones whole, and becomes the configuration a later reload compares with.
func TestSet(t *testing.T) {
	c := testConfig(t, "a")
	svc := startService(t, c)
	fps := 1000
	if _, err := svc.Do(t.Context(), status.Command{Op: status.OpSet, Stream: "a", Settings: status.Settings{Mode: "record", FPS: &fps}}); status.CodeOf(err) != status.CodeInvalidConfig {
		t.Fatalf("fps 1000: %v", err)
	}
	if m := svc.Status().Streams[0].Mode; m != "live" {
		t.Errorf("a refused set changed the mode to %s", m)
	}
	if _, err := svc.Do(t.Context(), status.Command{Op: status.OpSet, Stream: "a"}); status.CodeOf(err) != status.CodeBadArgument {
		t.Errorf("empty set: %v", err)
	}
	if _, err := svc.Do(t.Context(), status.Command{Op: status.OpSet, Stream: "a", Settings: status.Settings{UploadRateLimit: "fast"}}); status.CodeOf(err) != status.CodeBadArgument {
		t.Errorf("bad rate: %v", err)
	}
	res, err := svc.Do(t.Context(), status.Command{Op: status.OpSet, Stream: "a", Settings: status.Settings{Mode: "record", UploadRateLimit: "1MB/s"}})
	if err != nil || len(res.Changes) != 2 {
		t.Fatalf("set: %+v %v", res, err)
	}
	for _, ch := range res.Changes {
		if ch.Effect != "live" {
			t.Errorf("change %+v not live", ch)
		}
	}
	if m := svc.Status().Streams[0].Mode; m != "record" {
		t.Errorf("mode after set: %s", m)
	}
	// Reloading the original file brings the file's values back.
	res, err = svc.Reload(testConfig(t, "a"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, ch := range res.Changes {
		if ch.Stream == "a" {
			keys = append(keys, ch.Key)
		}
	}
	if !slices.Contains(keys, "mode") || !slices.Contains(keys, "upload_rate_limit") {
		t.Errorf("reload after set changed %v, want mode and upload_rate_limit back", keys)
	}
}
