// Package testdirs makes directories for tests that need the file system
// to refuse them something.
package testdirs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// ReadOnly creates parent/name as an empty directory that refuses new
// files to the user running the test too. Root ignores permission bits,
// so as root it is a read-only tmpfs; others get mode 0555. The test is
// skipped where neither refuses a write (root without CAP_SYS_ADMIN), and
// the directory is writable again when the test ends.
func ReadOnly(tb testing.TB, parent, name string) string {
	tb.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=64k"); err == nil {
		tb.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				tb.Errorf("unmount %s: %v", dir, err)
			}
		})
	} else if err := os.Chmod(dir, 0o555); err == nil {
		tb.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	// Whatever was set up, only a directory that really refuses a new file
	// tests anything.
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err == nil {
		os.Remove(probe)
		tb.Skip("cannot make a directory read-only for this user here (needs a tmpfs mount as root)")
	}
	return dir
}
