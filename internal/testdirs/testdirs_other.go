//go:build !linux

package testdirs

import "testing"

// ReadOnly needs Linux mounts; elsewhere the test is skipped.
func ReadOnly(tb testing.TB, parent, name string) string {
	tb.Helper()
	tb.Skip("read-only test directories are made with Linux mounts")
	return ""
}
