package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/testclips"
)

// TestRunSecondDaemonRefusedWithoutLockFile starts the real binary, deletes
// its ring's lock file, and starts a second daemon on the same state_dir:
// it must refuse, naming the first, and leave every stored record intact.
func TestRunSecondDaemonRefusedWithoutLockFile(t *testing.T) {
	cfg, state := writeRunConfig(t, testclips.Get("high-aud.h264"), true, "")
	ringDir := filepath.Join(state, "cam-test")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "-config", cfg, "-socket", filepath.Join(t.TempDir(), "kvscamd.sock"))
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := ringStats(t, ringDir); err == nil && st.Fragments >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fragments stored within 30 s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition with a deadline
	}
	if err := os.Remove(filepath.Join(ringDir, "lock")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, _, errOut := runWithContext(ctx, "run", "-config", cfg, "-socket", filepath.Join(t.TempDir(), "second.sock"))
	if ctx.Err() != nil {
		t.Fatal("the second daemon ran beside the first")
	}
	if code == exitOK || !strings.Contains(errOut, fmt.Sprintf("pid %d", cmd.Process.Pid)) || !strings.Contains(errOut, ringDir) {
		t.Fatalf("second daemon: exit %d, stderr %q; want a refusal naming pid %d and %s", code, errOut, cmd.Process.Pid, ringDir)
	}

	t.Logf("second daemon: %s", strings.TrimSpace(errOut))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("first daemon after SIGTERM: %v; stderr:\n%s", err, stderr.String())
	}
	// Every fragment the first daemon stored is still there and reads
	// back whole.
	code, stdout, errOut := runCLI(t, "export", "-config", cfg, "-stream", "cam-test", "-o", filepath.Join(t.TempDir(), "all.mkv"))
	st, err := ringStats(t, ringDir)
	if code != exitOK || err != nil || st.CorruptSkipped != 0 || st.TornTails != 0 {
		t.Fatalf("export after the refused second daemon: exit %d %q %q; ring %+v, %v", code, stdout, errOut, st, err)
	}
	if !strings.Contains(stdout, fmt.Sprintf("in %d fragments", st.Fragments)) {
		t.Fatalf("export wrote %q; the ring holds %d fragments", stdout, st.Fragments)
	}
}
