package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLoggerLevelAndTime(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, slog.LevelInfo)
	log.Debug("hidden")
	log.Info("shown", "stream", "cam-0001")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("debug record logged at info level: %q", out)
	}
	if !strings.Contains(out, "level=INFO msg=shown stream=cam-0001") || !strings.HasPrefix(out, "time=") {
		t.Errorf("output %q", out)
	}
}

// identity returns the "<device>:<inode>" systemd would put in
// JOURNAL_STREAM for f.
func identity(t *testing.T, f *os.File) string {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestJournalDetection(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := os.Create(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id := identity(t, f)

	if !writesToJournal(f, id) {
		t.Error("stream with matching identity not detected as the journal")
	}
	if writesToJournal(other, id) {
		t.Error("redirected stream taken for the journal")
	}
	if writesToJournal(f, "") || writesToJournal(&bytes.Buffer{}, id) {
		t.Error("journal detected without JOURNAL_STREAM or without a file")
	}

	t.Setenv("JOURNAL_STREAM", id)
	newLogger(f, slog.LevelDebug).Debug("to the journal", "k", 1)
	newLogger(other, slog.LevelDebug).Debug("to a file")
	got, _ := os.ReadFile(f.Name())
	if string(got) != "level=DEBUG msg=\"to the journal\" k=1\n" {
		t.Errorf("journal line %q still has a time or lost fields", got)
	}
	if got, _ := os.ReadFile(other.Name()); !bytes.HasPrefix(got, []byte("time=")) {
		t.Errorf("non-journal line %q lacks its time", got)
	}
}
