// Package vmtest runs the V4L2 driver's device tests against real kernel
// drivers: a QEMU virtual machine (TCG, so no KVM is needed) boots Debian's
// kernel with vivid and v4l2loopback, and the driver's test binary, built
// with -tags vmtest (static, like every CGO_ENABLED=0 build), runs as its
// init workload.
//
// Kernel, modules and initramfs base are built once into build/vm by
// build-vm.sh and reused. The test fails, naming the Debian packages to
// install, when a tool is missing.
package vmtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/testvm"
)

// Bounds for a slow CI machine; a normal run takes a fraction of them.
const (
	buildTimeout = 15 * time.Minute // kernel download and module build, cold
	vmTimeout    = 5 * time.Minute  // boot plus the in-VM tests
)

func TestV4L2DriverInVM(t *testing.T) {
	testvm.Require(t, "the V4L2 VM test", []testvm.Tool{{Path: "gcc", Package: "gcc"}, {Path: "make", Package: "make"}}, "linux-headers-amd64")
	// The go command that runs this test builds the in-VM binaries too.
	goTool := testvm.GoCommand()
	root := testvm.RepoRoot(t)
	vmDir := filepath.Join(root, "build", "vm")
	script := func(name string) string { return filepath.Join(root, "drivers", "v4l2", "vmtest", name) }

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	t.Log(strings.TrimSpace(testvm.Run(t, ctx, root, nil, script("build-vm.sh"), vmDir)))
	testBin := filepath.Join(vmDir, "v4l2.test")
	writer := filepath.Join(vmDir, "writer")
	// Without cgo the test binary is static, as the busybox guest needs,
	// and built the way the daemon is.
	testvm.Run(t, ctx, root, []string{"CGO_ENABLED=0"}, goTool, "test", "-c", "-tags", "vmtest", "-o", testBin, "./drivers/v4l2")
	testvm.Run(t, ctx, root, []string{"CGO_ENABLED=0"}, goTool, "build", "-o", writer, "./drivers/v4l2/vmtest/writer")
	clip := filepath.Join(root, "testdata", "baseline-repeat.h264") // 320x240, 150 frames, SPS/PPS before every IDR
	if _, err := os.Stat(clip); err != nil {
		t.Fatalf("test clip: %v (regenerate with testdata/gen.sh)", err)
	}
	setup := time.Since(start)

	vctx, vcancel := context.WithTimeout(context.Background(), vmTimeout)
	defer vcancel()
	start = time.Now()
	cmd := exec.CommandContext(vctx, script("qemu-exec.sh"), testBin, "-test.v", "-test.timeout", "240s")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"VM_DIR="+vmDir,
		"VM_FILES="+writer+" "+clip,
		"VM_ENV=KV_CLIP=/"+filepath.Base(clip)+" KV_WRITER=/writer",
		"VM_TIMEOUT="+strconv.Itoa(int(vmTimeout/time.Second)-10),
	)
	out, err := cmd.CombinedOutput()
	vmRun := time.Since(start)
	t.Logf("VM output:\n%s", out)
	t.Logf("setup (kernel, modules, binaries) %v; VM boot and test run %v", setup.Round(time.Millisecond), vmRun.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("in-VM tests failed (exit code 125 means the VM died or timed out): %v", err)
	}
	for _, name := range []string{"TestVMLoopbackH264FrameExact", "TestVMWaitsForProducerAndReopensAfterStall", "TestVMVividOffersNoH264", "TestVMVividIoctls", "TestMissingDeviceIsRetried"} {
		if !bytes.Contains(out, []byte("--- PASS: "+name)) {
			t.Errorf("%s did not pass inside the VM", name)
		}
	}
}
