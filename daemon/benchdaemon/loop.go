package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// loopDev is an ext4 filesystem on a loop device, mounted at Dir, so that
// /proc/diskstats counts exactly what the daemon's state costs the block
// device (data, metadata and journal) and nothing else.
type loopDev struct {
	Dir     string
	Device  string // /dev/loopN
	image   string
	mounted bool
}

// newLoopDev makes a sparse image of size bytes under work, attaches it and
// mounts it. mkfs initialises inode tables and the journal up front:
// lazily initialised ones would be written in the background while the
// benchmark counts sectors.
func newLoopDev(work string, size int64, noatime bool) (*loopDev, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("a loop device needs root (run without -loopdev, or as root)")
	}
	l := &loopDev{image: filepath.Join(work, "state.img"), Dir: filepath.Join(work, "mnt")}
	f, err := os.Create(l.image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command("losetup", "--find", "--show", l.image).Output()
	if err != nil {
		return nil, fmt.Errorf("losetup %s: %w", l.image, exitText(err))
	}
	l.Device = strings.TrimSpace(string(out))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", l.Device).CombinedOutput(); err != nil {
		l.Close()
		return nil, fmt.Errorf("mkfs.ext4 %s: %v: %s", l.Device, err, out)
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		l.Close()
		return nil, err
	}
	// Default options (relatime, data=ordered, 5 s commit), as a camera's
	// SD card is often mounted; noatime stops reads from writing access
	// times.
	var flags uintptr
	if noatime {
		flags |= syscall.MS_NOATIME
	}
	if err := syscall.Mount(l.Device, l.Dir, "ext4", flags, ""); err != nil {
		l.Close()
		return nil, fmt.Errorf("mount %s on %s: %w", l.Device, l.Dir, err)
	}
	l.mounted = true
	return l, nil
}

// Sectors syncs the filesystem, so that what the daemon wrote has reached
// the device, and returns the device's sectors written so far.
func (l *loopDev) Sectors() (int64, error) {
	fd, err := unix.Open(l.Dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return 0, err
	}
	err = unix.Syncfs(fd)
	unix.Close(fd)
	if err != nil {
		return 0, fmt.Errorf("syncfs %s: %w", l.Dir, err)
	}
	return sectorsWritten(filepath.Base(l.Device))
}

// Close unmounts and detaches; the image is removed with the work dir.
func (l *loopDev) Close() {
	if l.mounted {
		_ = syscall.Unmount(l.Dir, 0)
		l.mounted = false
	}
	if l.Device != "" {
		_ = exec.Command("losetup", "-d", l.Device).Run()
		l.Device = ""
	}
	os.Remove(l.image)
}

func exitText(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
