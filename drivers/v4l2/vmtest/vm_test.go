// Package vmtest runs the V4L2 driver's device tests against real kernel
// drivers: a QEMU virtual machine (TCG, so no KVM is needed) boots Debian's
// kernel with vivid and v4l2loopback, and the driver's test binary, built
// with -tags vmtest and linked statically, runs as its init workload.
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
	"runtime"
	"strings"
	"testing"
	"time"
)

// Bounds for a slow CI machine; a normal run takes a fraction of them.
const (
	buildTimeout = 15 * time.Minute // kernel download and module build, cold
	vmTimeout    = 5 * time.Minute  // boot plus the in-VM tests
)

// tools maps what the test runs to the Debian package that installs it.
var tools = []struct{ path, pkg string }{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"/usr/share/qemu/qboot.rom", "qemu-system-data"},
	{"/bin/busybox", "busybox-static"},
	{"cpio", "cpio"},
	{"depmod", "kmod"},
	{"gcc", "gcc"},
	{"make", "make"},
	{"python3", "python3"},
	{"dpkg", "dpkg"},
	{"apt-get", "apt"},
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

func run(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestV4L2DriverInVM(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("the V4L2 VM test boots an x86-64 Debian kernel and needs a linux/amd64 host (this is %s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	var missing []string
	for _, tool := range tools {
		if strings.HasPrefix(tool.path, "/") {
			if _, err := os.Stat(tool.path); err != nil {
				missing = append(missing, tool.pkg)
			}
		} else if _, err := exec.LookPath(tool.path); err != nil {
			missing = append(missing, tool.pkg)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing tools; install them with: apt-get install --no-install-recommends %s linux-headers-amd64",
			strings.Join(missing, " "))
	}
	// The go command that runs this test builds the in-VM binaries too.
	goTool := "go"
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if p := filepath.Join(strings.TrimSpace(string(out)), "bin", "go"); statOK(p) {
			goTool = p
		}
	}
	root := repoRoot(t)
	vmDir := filepath.Join(root, "build", "vm")
	script := func(name string) string { return filepath.Join(root, "drivers", "v4l2", "vmtest", name) }

	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	t.Log(strings.TrimSpace(run(t, ctx, root, nil, script("build-vm.sh"), vmDir)))
	testBin := filepath.Join(vmDir, "v4l2.test")
	writer := filepath.Join(vmDir, "writer")
	run(t, ctx, root, []string{"CGO_ENABLED=1"}, goTool, "test", "-c", "-tags", "vmtest", "-o", testBin,
		"-ldflags", `-linkmode external -extldflags "-static"`, "./drivers/v4l2")
	run(t, ctx, root, []string{"CGO_ENABLED=0"}, goTool, "build", "-o", writer, "./drivers/v4l2/vmtest/writer")
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
		"VM_TIMEOUT="+itoa(int(vmTimeout/time.Second)-10),
	)
	out, err := cmd.CombinedOutput()
	vmRun := time.Since(start)
	t.Logf("VM output:\n%s", out)
	t.Logf("setup (kernel, modules, binaries) %v; VM boot and test run %v", setup.Round(time.Millisecond), vmRun.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("in-VM tests failed (exit code 125 means the VM died or timed out): %v", err)
	}
	for _, name := range []string{"TestVMLoopbackH264FrameExact", "TestVMWaitsForProducerAndReopensAfterStall", "TestVMVividOffersNoH264", "TestMissingDeviceIsRetried"} {
		if !bytes.Contains(out, []byte("--- PASS: "+name)) {
			t.Errorf("%s did not pass inside the VM", name)
		}
	}
}

func itoa(n int) string {
	if n <= 0 {
		return "1"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func statOK(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
