// Package atomicfile replaces files so that readers, and the disk after a
// crash, see either the old content or the new, never a part: the data go
// to a temporary file in the same directory, which is synced, renamed over
// the target, and the directory synced so that the rename itself is
// durable.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Seams for the tests, which make a sync fail or watch the directory sync.
var (
	syncFile = (*os.File).Sync
	syncDir  = SyncDir
)

// File is a file being written under a temporary name; Commit puts it in
// place, Abort throws it away. It is for one goroutine.
type File struct {
	*os.File // the temporary file; write to it
	path     string
	perm     os.FileMode
	done     bool
}

// Option adjusts Create and WriteFile.
type Option func(*options)

type options struct {
	temp string // base name of the temporary file; "" for a unique one
}

// Temp writes through name, in the target's directory, instead of a fresh
// unique name, truncating a file left there. It suits a writer that owns
// its directory and removes name after a crash; unique names left by
// crashes would pile up unseen.
func Temp(name string) Option { return func(o *options) { o.temp = name } }

// Create starts replacing path. The file gets exactly perm when committed
// (the umask does not apply: the mode is part of what is replaced).
func Create(path string, perm os.FileMode, opts ...Option) (*File, error) {
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	f := &File{path: path, perm: perm}
	dir := filepath.Dir(path)
	var err error
	if o.temp == "" {
		// Hidden and named after the target, so that a leftover says
		// whose it is.
		f.File, err = os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	} else {
		f.File, err = os.OpenFile(filepath.Join(dir, o.temp), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("atomicfile: %w", err)
	}
	return f, nil
}

// Commit syncs the data, renames the file over path and syncs the
// directory. On failure before the rename the old file is untouched and
// the temporary one removed.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: " + f.path + " already committed or aborted")
	}
	tmp := f.Name()
	err := f.Chmod(f.perm)
	if err == nil {
		err = syncFile(f.File)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	f.done = true
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: write %s: %w", f.path, err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		// The new file is in place but may not survive a crash.
		return fmt.Errorf("atomicfile: sync directory of %s: %w", f.path, err)
	}
	return nil
}

// Abort removes the temporary file and leaves path as it was. It does
// nothing after Commit, so `defer f.Abort()` covers every early return.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// WriteFile replaces path with data, like os.WriteFile but atomically and
// durably; perm is applied exactly, as in Create.
func WriteFile(path string, data []byte, perm os.FileMode, opts ...Option) error {
	f, err := Create(path, perm, opts...)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	return f.Commit()
}

// SyncDir fsyncs a directory, making the creation, removal or renaming of
// its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
