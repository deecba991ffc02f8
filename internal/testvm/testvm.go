// Package testvm holds what the tests that boot Debian's kernel under QEMU
// share: the check that the host has the tools (naming the Debian packages
// that install them), the go command that builds what the guest runs, the
// repository root, and kernel.sh, which fetches the kernel and picks its
// modules for each test's build-vm.sh.
package testvm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Tool is a program or file a VM test needs and the Debian package that
// installs it. A Path starting with / is a file; anything else is looked
// up in PATH.
type Tool struct{ Path, Package string }

// Common is what every VM test needs: QEMU with its PVH firmware, a static
// busybox for the guest, cpio for its initramfs, and what kernel.sh runs.
var Common = []Tool{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"/usr/share/qemu/qboot.rom", "qemu-system-data"},
	{"/bin/busybox", "busybox-static"},
	{"cpio", "cpio"},
	{"depmod", "kmod"},
	{"python3", "python3"},
	{"dpkg", "dpkg"},
	{"apt-get", "apt"},
}

// Require fails the test unless the host is linux/amd64 (the guest kernel
// is Debian's x86-64 one) and has every tool in Common and extra; the
// message is the apt-get line that installs what is missing, with also
// appended (packages the test needs that no tool stands for).
func Require(t testing.TB, what string, extra []Tool, also ...string) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("%s boots an x86-64 Debian kernel and needs a linux/amd64 host (this is %s/%s)", what, runtime.GOOS, runtime.GOARCH)
	}
	var missing []string
	for _, tool := range append(append([]Tool(nil), Common...), extra...) {
		var err error
		if strings.HasPrefix(tool.Path, "/") {
			_, err = os.Stat(tool.Path)
		} else {
			_, err = exec.LookPath(tool.Path)
		}
		if err != nil {
			missing = append(missing, tool.Package)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s: missing tools; install them with: apt-get install --no-install-recommends %s",
			what, strings.Join(append(missing, also...), " "))
	}
}

// RepoRoot is the directory holding go.mod above the test's directory.
func RepoRoot(t testing.TB) string {
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

// GoCommand is the go tool that runs this test, so that what the guest
// runs is built by the same toolchain.
func GoCommand() string {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// Run runs name in dir with env added to this process's environment and
// returns its combined output; the test fails with that output if the
// command fails.
func Run(t testing.TB, ctx context.Context, dir string, env []string, name string, args ...string) string {
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
