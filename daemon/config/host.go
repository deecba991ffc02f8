package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"

	"github.com/kvscamd/kvscamd/drivers/file"
	"github.com/kvscamd/kvscamd/internal/kvs"
)

// probePrefix names the files CheckHost creates to test that a directory
// is writable. The ring ignores files it does not know, so a probe left
// behind by a crash cannot confuse it.
const probePrefix = ".kvscamd-probe-"

// RingDir returns the directory that holds the ring buffer of the stream
// named stream. Validate has refused names (".", "..", anything with a
// slash) that would put it anywhere but directly below state_dir.
func (c *Config) RingDir(stream string) string {
	return filepath.Join(c.StateDir, stream)
}

// CheckHost checks what a valid configuration needs from this machine
// before run can start: state_dir and each stream's ring directory exist or
// can be created, are directories and are writable, a file stream's path
// is a readable Annex-B H.264 file and an exec stream's command can be
// found. These are the checks run would otherwise fail on while starting,
// so that `kvscamd check` reports them first.
//
// Nothing is changed on disk except a probe file, created and removed again
// in each directory that already exists; directories that do not exist yet
// are not created. Call it after Validate: keys Validate rejects are
// skipped here rather than reported twice.
func (c *Config) CheckHost() Problems {
	var v validator
	stateOK := filepath.IsAbs(c.StateDir)
	if stateOK {
		if msg := checkWritableDir(c.StateDir); msg != "" {
			v.add("state_dir", "%s", msg)
			// Every ring lives below it: one problem is enough.
			stateOK = false
		}
	}
	for i := range c.Streams {
		s := &c.Streams[i]
		key := fmt.Sprintf("stream[%d]", i)
		if stateOK && kvs.CheckStreamName(s.Name) == nil {
			if msg := checkRingDir(c.RingDir(s.Name)); msg != "" {
				v.add(key+".name", "%s", msg)
			}
		}
		switch s.Driver {
		case DriverFile:
			if s.Path == "" || s.FPS < MinFPS || s.FPS > MaxFPS {
				break
			}
			// The constructor run uses: it opens the file and checks that
			// it starts with Annex-B H.264, and reads nothing else.
			if _, err := file.New(file.Config{Path: s.Path, FPS: s.FPS}); err != nil {
				v.add(key+".path", "%v", err)
			}
		case DriverExec:
			if len(s.Command) == 0 || s.Command[0] == "" {
				break
			}
			// The exec driver gives up at once if its first start fails
			// because the program is missing, so run would stop there.
			if _, err := osexec.LookPath(s.Command[0]); err != nil {
				v.add(key+".command", "%v; install it or give its full path as the first element of command", err)
			}
		}
	}
	if len(v) == 0 {
		return nil
	}
	return Problems(v)
}

// checkWritableDir returns what stops dir from being used as a writable
// directory, or "". A missing dir is fine if the nearest directory that
// does exist is writable, since the ring creates the rest with MkdirAll.
func checkWritableDir(dir string) string {
	dir = filepath.Clean(dir)
	existing, fi, err := nearestExisting(dir)
	switch {
	case err != nil:
		return fmt.Sprintf("%s cannot be checked: %v; make it reachable for the service user", dir, err)
	case !fi.IsDir() && existing == dir:
		return fmt.Sprintf("%s is not a directory; move the file away or set state_dir to a directory", dir)
	case !fi.IsDir():
		return fmt.Sprintf("%s cannot be created because %s is not a directory; set state_dir to a path below a directory", dir, existing)
	}
	if err := probeWrite(existing); err != nil {
		if existing == dir {
			return fmt.Sprintf("%s is not writable (%v); %s, or set state_dir to a writable directory", dir, err, writeFix(err, existing, "chown kvscamd: "+dir))
		}
		return fmt.Sprintf("%s does not exist and cannot be created, %s is not writable (%v); %s, or set state_dir to a writable directory", dir, existing, err, writeFix(err, existing, "install -d -o kvscamd "+dir))
	}
	return ""
}

// checkRingDir checks a stream's ring directory below a state_dir that
// checkWritableDir accepted; a missing one is created by the ring.
func checkRingDir(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ""
	case err != nil:
		return fmt.Sprintf("ring directory %s cannot be checked: %v; make it reachable for the service user", dir, err)
	case !fi.IsDir():
		return fmt.Sprintf("ring directory %s is not a directory; move the file away or rename the stream", dir)
	}
	if err := probeWrite(dir); err != nil {
		return fmt.Sprintf("ring directory %s is not writable (%v); %s", dir, err, writeFix(err, dir, "chown -R kvscamd: "+dir))
	}
	return ""
}

// writeFix suggests how to make dir writable after err refused a file in
// it; chown is the usual answer but no help against a read-only mount or
// an immutable directory, which refuse root too.
func writeFix(err error, dir, chown string) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return "it is on a read-only file system: remount it read-write"
	case errors.Is(err, syscall.EPERM):
		return "check that it is not immutable (lsattr -d " + dir + "; chattr -i " + dir + ")"
	}
	return "make it writable for the service user (e.g. " + chown + ")"
}

// nearestExisting returns dir, or its closest ancestor that exists, with
// its FileInfo. A file in the middle of the path ends the walk there (the
// kernel reports ENOTDIR for what lies below it).
func nearestExisting(dir string) (string, fs.FileInfo, error) {
	p := dir
	for {
		fi, err := os.Stat(p)
		if err == nil {
			return p, fi, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return p, nil, err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p, nil, err
		}
		p = parent
	}
}

// probeWrite creates a file in dir and removes it again. Permission bits
// alone cannot answer whether a directory is writable: root ignores them,
// while a read-only mount or an immutable attribute stops even root.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, probePrefix+"*")
	if err != nil {
		return unwrapPath(err)
	}
	name := f.Name()
	return errors.Join(unwrapPath(f.Close()), unwrapPath(os.Remove(name)))
}

// unwrapPath drops the probe file's random name from an error, which
// would only distract from the directory the message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ValidateForRun is every check `kvscamd run` makes before it starts or
// applies a configuration: Validate, then CheckHost. `kvscamd check` runs
// the same two, so a file that check passes is one run accepts.
func (c *Config) ValidateForRun() error {
	if err := c.Validate(); err != nil {
		return err
	}
	if ps := c.CheckHost(); len(ps) > 0 {
		return ps
	}
	return nil
}
