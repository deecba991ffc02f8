package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvscamd/kvscamd/internal/testdirs"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// TestRunRingLargerThanFilesystem runs the real binary with the default
// ring_size of 1 GiB on a 32 MiB tmpfs: check warns and says by how much,
// the ring stores video from the start, more video than the filesystem
// holds goes through it (the oldest evicted), status shows the effective
// capacity, and the newest video reaches the endpoint.
func TestRunRingLargerThanFilesystem(t *testing.T) {
	mnt := testdirs.Small(t, "32m", "runs the daemon with its state_dir")
	state := filepath.Join(mnt, "state")
	// A replay faster than real time runs its timestamps ahead of the
	// clock; the endpoint must not refuse them for that here.
	kvs := kvslocal.Start(t, kvslocal.Options{MaxFutureTimestamp: -1})
	kvs.CreateStream("cam-1", 24*time.Hour)
	creds := kvs.IssueCredentials(time.Hour)

	// 48 MB of video: the clip many times over, replayed as fast as the
	// pipeline takes it, in fragments of about 8 s.
	clip := testclips.Get("high-aud.h264")
	one := mustRead(t, clip.Path())
	long := filepath.Join(t.TempDir(), "long.h264")
	if err := os.WriteFile(long, bytes.Repeat(one, (48<<20)/len(one)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "kvscamd.toml")
	writeControlConfig(t, cfg, state, creds, kvs.URL, "", `
[[stream]]
name = "cam-1"
driver = "file"
path = "`+long+`"
loop = false
realtime = false
fps = 30
keyframe_interval = "8s"
ring_size = "1GiB"
`)

	code, out, _ := runCLI(t, "check", "-config", cfg)
	if !strings.Contains(out, "ring: WARN stream cam-1: ring_size 1 GiB exceeds") || !strings.Contains(out, " by ") {
		t.Fatalf("check (exit %d) does not warn about the ring larger than the filesystem:\n%s", code, out)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "kvscamd.sock")
	cmd := exec.Command(exe, "run", "-config", cfg, "-socket", sock)
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the mount, so it runs before the unmount: the
	// daemon must be gone before its files' filesystem goes.
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("run stderr:\n%s", stderr.String())
		}
	})
	cl := status.NewClient(sock)
	// The whole file went through a ring that holds less than it.
	st := pollStatus(t, cl, 3*time.Minute, "the whole file captured", func(st status.Status) bool {
		return streamOf(st, "cam-1").State == "source ended"
	})
	s := streamOf(st, "cam-1")
	if s.RingBytesEffective <= 0 || s.RingBytesEffective >= 32<<20 || s.RingBytesCapacity != 1<<30 || s.AppendErrors != 0 {
		t.Fatalf("status: effective capacity %d, capacity %d, append errors %d; want the tmpfs size less a reserve, 1 GiB, 0",
			s.RingBytesEffective, s.RingBytesCapacity, s.AppendErrors)
	}
	if s.RingBytesUsed > s.RingBytesEffective || s.FragmentsStored*300<<10 < 40<<20 {
		t.Fatalf("ring uses %d bytes of its effective capacity %d after storing %d fragments; want at most all of it, after more video than the filesystem holds", s.RingBytesUsed, s.RingBytesEffective, s.FragmentsStored)
	}
	newest := s.NewestStored
	if newest.IsZero() {
		t.Fatal("status names no newest stored fragment")
	}
	// The newest video is uploaded: the endpoint gets the fragment that
	// ends where the ring's newest does.
	wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := kvs.Wait(wctx, "cam-1", func(ks kvslocal.State) bool {
		for _, f := range ks.Fragments {
			// DurationMs ends at the last frame's start: allow a frame.
			if f.Persisted && f.ProducerTime+f.DurationMs >= newest.UnixMilli()-100 {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the newest fragment (ending %v) never reached the endpoint: %v", newest, err)
	}
	if strings.Contains(stderr.String(), "preallocate") || strings.Contains(stderr.String(), "not stored") {
		t.Fatalf("appends failed on the small filesystem")
	}
	t.Logf("effective capacity %d of %d, stored %d fragments, lost %d (evicted before upload), acked %d",
		s.RingBytesEffective, s.RingBytesCapacity, s.FragmentsStored, s.FragmentsLost, s.FragmentsAcked)
}
