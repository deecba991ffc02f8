package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// only checks that dir holds exactly the named entries: no temporary file
// is left behind.
func only(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("directory holds %q, want %q", got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("directory holds %q, want %q", got, names)
		}
	}
}

func TestWriteFileHonoursPerm(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	// 0666 is wider than any usual umask lets os.WriteFile create.
	for _, perm := range []os.FileMode{0o666, 0o600, 0o640} {
		if err := WriteFile(path, []byte("x"), perm); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != perm {
			t.Fatalf("mode %v, want %v", st.Mode().Perm(), perm)
		}
	}
	only(t, dir, "f")
}

func TestFileAppearsOnlyComplete(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.mkv")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.WriteString("new, first half"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "old" {
		t.Fatalf("while writing, the target reads %q", got)
	}
	if _, err := f.WriteString(", second half"); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "new, first half, second half" {
		t.Fatalf("after Commit: %q", got)
	}
	only(t, dir, "out.mkv")
	if err := f.Commit(); err == nil {
		t.Fatal("a second Commit succeeded")
	}
}

func TestAbortKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	f.Abort()
	f.Abort() // repeated, as a deferred Abort after an explicit one
	if got := read(t, path); got != "old" {
		t.Fatalf("after Abort: %q", got)
	}
	only(t, dir, "f")
}

func TestFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	failing := errors.New("disk on fire")
	syncFile = func(*os.File) error { return failing }
	t.Cleanup(func() { syncFile = (*os.File).Sync })
	if err := WriteFile(path, []byte("new"), 0o644); !errors.Is(err, failing) {
		t.Fatalf("WriteFile with a failing sync = %v", err)
	}
	if got := read(t, path); got != "old" {
		t.Fatalf("after a failed write: %q", got)
	}
	only(t, dir, "f")
	// Nowhere to create the temporary file: an error, nothing written.
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestDirectorySyncedAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	var synced []string
	syncDir = func(d string) error {
		// The rename must come first: syncing before it would not make it
		// durable.
		if _, err := os.Stat(path); err != nil {
			t.Errorf("directory synced before the rename: %v", err)
		}
		synced = append(synced, d)
		return SyncDir(d)
	}
	t.Cleanup(func() { syncDir = SyncDir })
	if err := WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("directories synced: %q, want [%q]", synced, dir)
	}
	failing := errors.New("EIO")
	syncDir = func(string) error { return failing }
	if err := WriteFile(path, []byte("y"), 0o644); !errors.Is(err, failing) {
		t.Fatalf("a failed directory sync was not reported: %v", err)
	}
}

func TestTempName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acks.log")
	// A leftover from a crash is overwritten, not appended to.
	if err := os.WriteFile(filepath.Join(dir, "acks.log.tmp"), []byte("stale stale stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("fresh"), 0o640, Temp("acks.log.tmp")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "fresh" {
		t.Fatalf("got %q", got)
	}
	only(t, dir, "acks.log")
}

func TestSyncDirMissing(t *testing.T) {
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
