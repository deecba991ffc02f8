//go:build !linux

package ring

import (
	"errors"
	"os"
)

var errNotSupported = errors.New("not supported")

// kvscamd runs on Linux; these fallbacks only keep the package building
// elsewhere (for editors and cross checks).

func preallocate(f *os.File, size int64) (bool, error) { return false, nil }
func punchHole(f *os.File, off, n int64) error         { return errNotSupported }
func isNotSupported(err error) bool                    { return err == errNotSupported }
func datasync(f *os.File) error                        { return f.Sync() }
func lockFile(f *os.File) error                        { return nil }
func allocated(fi os.FileInfo) int64                   { return roundUp(fi.Size(), blockSize) }
func nextData(f *os.File, off int64) int64             { return off }
func isNoSpace(err error) bool                         { return false }

func openDirect(path string) *os.File { return nil }

func flockHolder(path string) int { return 0 }

func fsSpace(path string) (avail, total int64, err error) { return 0, 0, errNotSupported }
