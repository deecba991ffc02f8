package config

import (
	"path/filepath"
	"testing"

	"github.com/kvscamd/kvscamd/internal/testdirs"
)

// readOnlyDir returns an empty directory that refuses new files, to the
// user running the test too. Root ignores permission bits, so as root it
// is a read-only tmpfs; others get mode 0555. The test is skipped where
// neither works (root without CAP_SYS_ADMIN).
func readOnlyDir(t *testing.T) string {
	t.Helper()
	return readOnlyDirIn(t, t.TempDir(), "ro")
}

// readOnlyDirIn is readOnlyDir as parent/name, parent staying writable.
func readOnlyDirIn(t *testing.T, parent, name string) string {
	t.Helper()
	return testdirs.ReadOnly(t, parent, name)
}

func TestCheckHostReadOnly(t *testing.T) {
	t.Run("state_dir", func(t *testing.T) {
		c := hostConfig(t)
		c.StateDir = readOnlyDir(t)
		ps := c.CheckHost()
		if len(ps) != 1 {
			t.Errorf("want one problem, got %v", ps)
		}
		wantProblem(t, ps, "state_dir", c.StateDir+" is not writable", "set state_dir to a writable directory")
	})
	t.Run("missing state_dir below", func(t *testing.T) {
		c := hostConfig(t)
		parent := readOnlyDir(t)
		c.StateDir = filepath.Join(parent, "a", "b")
		wantProblem(t, c.CheckHost(), "state_dir", "does not exist and cannot be created", parent+" is not writable", "set state_dir to a writable directory")
	})
	t.Run("ring directory", func(t *testing.T) {
		c := hostConfig(t)
		c.StateDir = t.TempDir()
		readOnlyDirIn(t, c.StateDir, c.Streams[0].Name)
		ps := c.CheckHost()
		if len(ps) != 1 {
			t.Errorf("want one problem, got %v", ps)
		}
		wantProblem(t, ps, "stream[0].name", "ring directory", "is not writable")
	})
}
