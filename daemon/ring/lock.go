package ring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// One writer per ring. The lock is an flock on the ring directory itself:
// a directory cannot be unlinked while it holds files, and replacing it
// moves the ring's files with it, so deleting the `lock` file cannot let a
// second writer in. The `lock` file is still locked too (older versions of
// the daemon lock only it, and they must exclude newer ones during an
// upgrade) and holds the holder's pid and program name, for the error a
// second writer gets.

// lockRing takes both locks on dir and records this process as the holder.
// It returns the open directory and lock file, which hold the locks until
// closed.
func lockRing(dir string) (dirF, lockF *os.File, err error) {
	dirF, err = os.Open(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("ring: open %s: %w; check state_dir and its permissions", dir, err)
	}
	if err := lockFile(dirF); err != nil {
		dirF.Close()
		return nil, nil, lockError(dir, err)
	}
	path := filepath.Join(dir, lockName)
	lockF, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		dirF.Close()
		return nil, nil, fmt.Errorf("ring: open %s: %w; check the permissions of state_dir", path, err)
	}
	if err := lockFile(lockF); err != nil {
		dirF.Close()
		lockF.Close()
		return nil, nil, lockError(dir, err)
	}
	// Best effort: the holder's name only improves the second writer's
	// error message.
	if lockF.Truncate(0) == nil {
		lockF.WriteAt([]byte(holderLine(os.Getpid())), 0)
	}
	return dirF, lockF, nil
}

func lockError(dir string, err error) error {
	if !errors.Is(err, errLocked) {
		return fmt.Errorf("ring: lock %s: %w", dir, err)
	}
	who := "another process (a running kvscamd?)"
	if h := lockHolder(dir); h != "" {
		who = h
	}
	return fmt.Errorf("ring: open %s: %w: %s is writing this ring; stop it or give this daemon another state_dir", dir, errLocked, who)
}

// holderLine describes a process as "pid N (name)".
func holderLine(pid int) string {
	s := "pid " + strconv.Itoa(pid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
		s += " (" + strings.TrimSpace(string(b)) + ")"
	}
	return s
}

// lockHolder names the process holding the lock on dir: the kernel's lock
// table knows it even when the lock file was deleted; the lock file's
// contents are the fallback.
func lockHolder(dir string) string {
	if pid := flockHolder(dir); pid > 0 {
		return holderLine(pid)
	}
	b, err := os.ReadFile(filepath.Join(dir, lockName))
	if err != nil {
		return ""
	}
	if s := strings.TrimSpace(string(b)); strings.HasPrefix(s, "pid ") && len(s) < 200 {
		return s
	}
	return ""
}
