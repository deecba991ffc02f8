package testdirs

import (
	"os"
	"os/exec"
	"testing"
)

// Small mounts a tmpfs of size (e.g. "32m") in a new temporary directory
// and returns its path, for tests that must fill a real filesystem; why
// says what for, in the error when the test cannot mount (it needs root).
// It is unmounted when the test ends.
func Small(tb testing.TB, size, why string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatalf("this test %s on a small tmpfs and needs root (CI runs the tests as root)", why)
	}
	mnt := tb.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		tb.Fatalf("mount tmpfs (needs CAP_SYS_ADMIN and util-linux mount): %v: %s", err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}
