//go:build linux

package ring

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// preallocate reserves size bytes for f so that later writes neither fail
// with ENOSPC nor change the file size (which would make every fdatasync
// commit inode metadata too). ok=false means the filesystem cannot do it and
// the caller should carry on without preallocation.
func preallocate(f *os.File, size int64) (ok bool, err error) {
	for {
		err = unix.Fallocate(int(f.Fd()), 0, 0, size)
		if err != unix.EINTR {
			break
		}
	}
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return false, nil
	}
	return false, err
}

// punchHole frees the blocks of [off, off+n) while keeping the file size.
func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func isNotSupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

// datasync flushes f's data and whatever metadata is needed to read it back.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// lockFile takes an exclusive advisory lock so that two daemons cannot
// write the same ring.
func lockFile(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

// allocated returns the bytes a file occupies on disk.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return roundUp(fi.Size(), blockSize)
}

// nextData returns the first offset >= off that may hold data, skipping
// holes; -1 when there is none.
func nextData(f *os.File, off int64) int64 {
	n, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return -1
	}
	if err != nil {
		return off
	}
	return n
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// openDirect opens path for O_DIRECT writes, or returns nil when the
// filesystem does not support them (tmpfs).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// fsSpace returns the bytes an unprivileged writer may still use on the
// filesystem holding path, and its size.
func fsSpace(path string) (avail, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	// Bsize is int32 on 32-bit ARM and int64 elsewhere.
	bs := int64(st.Bsize)
	return int64(st.Bavail) * bs, int64(st.Blocks) * bs, nil
}
