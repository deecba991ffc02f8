package logging

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLoggerLevelAndTime(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelInfo)
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

func TestLevelChangesAtRunTime(t *testing.T) {
	var buf bytes.Buffer
	var level slog.LevelVar
	level.Set(slog.LevelWarn)
	log := New(&buf, &level)
	log.Info("before")
	level.Set(slog.LevelDebug)
	log.Debug("after")
	if out := buf.String(); strings.Contains(out, "before") || !strings.Contains(out, "msg=after") {
		t.Errorf("output %q", out)
	}
}

// identity returns the "<device>:<inode>" systemd would put in
// JOURNAL_STREAM for f.
func identity(t *testing.T, f *os.File) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func createFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readFile(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJournalDetection(t *testing.T) {
	f := createFile(t, "journal")
	other := createFile(t, "other")
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
}

// collector is a socket standing in for journald's: it hands over every
// native-protocol entry sent to it, whether in a datagram or, for a large
// one, in a memory file passed along.
type collector struct {
	path    string
	entries chan []byte
	errs    chan error
	passed  atomic.Int32 // entries that came in a passed file
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{path: path, entries: make(chan []byte, 100), errs: make(chan error, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		oob := make([]byte, unix.CmsgSpace(4))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return // closed at cleanup
			}
			if oobn == 0 {
				c.entries <- bytes.Clone(buf[:n])
				continue
			}
			entry, err := readPassedFile(oob[:oobn])
			if err != nil {
				c.errs <- err
				return
			}
			c.passed.Add(1)
			c.entries <- entry
		}
	}()
	return c
}

func readPassedFile(oob []byte) ([]byte, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("parse control message: %v (%d messages)", err, len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("parse passed descriptors: %v (%d)", err, len(fds))
	}
	f := os.NewFile(uintptr(fds[0]), "passed entry")
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_WRITE == 0 {
		return nil, fmt.Errorf("passed file not sealed against writes: %v (seals %#x)", err, seals)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// The sender's writes moved the shared offset to the end; read from 0.
	return io.ReadAll(io.NewSectionReader(f, 0, st.Size()))
}

// next returns the next entry, failing the test if none comes: a sent
// datagram is queued before the send returns, so waiting long means lost.
func (c *collector) next(t *testing.T) []byte {
	t.Helper()
	select {
	case e := <-c.entries:
		return e
	case err := <-c.errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no journal entry received")
	}
	return nil
}

// none fails the test if an entry is already queued.
func (c *collector) none(t *testing.T) {
	t.Helper()
	select {
	case e := <-c.entries:
		t.Errorf("unexpected entry %q", e)
	default:
	}
}

func TestJournalPathSendsNatively(t *testing.T) {
	f := createFile(t, "stderr")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	c := newCollector(t)
	log := New(f, slog.LevelInfo, WithJournalSocket(c.path))
	log.Debug("hidden")
	log.Info("hello", "stream", "cam-0001")
	entry := string(c.next(t))
	for _, want := range []string{"MESSAGE=hello\n", "PRIORITY=6\n", "SYSLOG_IDENTIFIER=kvscamd\n", "STREAM=cam-0001\n"} {
		if !strings.Contains(entry, want) {
			t.Errorf("entry %q lacks %q", entry, want)
		}
	}
	c.none(t)
	if out := readFile(t, f); out != "" {
		t.Errorf("text written to the journal stream as well: %q", out)
	}
}

func TestJournalLargeEntryPassedAsFile(t *testing.T) {
	f := createFile(t, "stderr")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	c := newCollector(t)
	log := New(f, slog.LevelInfo, WithJournalSocket(c.path))
	big := strings.Repeat("0123456789abcdef", 32<<10) // 512 KiB, more than one datagram holds
	log.Info("dump", "sps", big)
	entry := string(c.next(t))
	if !strings.Contains(entry, "SPS="+big+"\n") || !strings.HasPrefix(entry, "MESSAGE=dump\n") {
		t.Errorf("large entry of %d bytes garbled", len(entry))
	}
	if n := c.passed.Load(); n != 1 {
		t.Errorf("%d entries came in a passed file, want the large one", n)
	}
	if out := readFile(t, f); out != "" {
		t.Errorf("large entry fell back to text: %.200q", out)
	}
}

func TestJournalFallbackToText(t *testing.T) {
	f := createFile(t, "stderr")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	missing := filepath.Join(t.TempDir(), "no-such.sock")
	log := New(f, slog.LevelDebug, WithJournalSocket(missing))
	log.Debug("to the journal", "k", 1)
	log.Debug("again", "k", 2)
	lines := strings.Split(strings.TrimSuffix(readFile(t, f), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one note and two records, got %q", lines)
	}
	if !strings.HasPrefix(lines[0], `level=WARN msg="journal socket unwritable, logging as text" op="journal send" socket=`+missing) ||
		!strings.Contains(lines[0], "no such file or directory") {
		t.Errorf("note %q does not say what failed", lines[0])
	}
	// No time: the journal stream stamps lines itself.
	if lines[1] != `level=DEBUG msg="to the journal" k=1` || lines[2] != `level=DEBUG msg=again k=2` {
		t.Errorf("records %q", lines[1:])
	}
}

func TestJournalFallbackEndsWhenSocketReturns(t *testing.T) {
	f := createFile(t, "stderr")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.sock")
	log := New(f, slog.LevelInfo, WithJournalSocket(path))
	log.Info("while down")
	c := newCollector(t)
	if err := os.Rename(c.path, path); err != nil {
		t.Fatal(err)
	}
	log.Info("back up")
	if entry := string(c.next(t)); !strings.HasPrefix(entry, "MESSAGE=back up\n") {
		t.Errorf("entry %q", entry)
	}
	if out := readFile(t, f); strings.Contains(out, "back up") || !strings.Contains(out, `msg="while down"`) {
		t.Errorf("text %q", out)
	}
}

func TestNonJournalStreamIgnoresJournal(t *testing.T) {
	f := createFile(t, "stderr")
	other := createFile(t, "redirected")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	c := newCollector(t)
	New(other, slog.LevelInfo, WithJournalSocket(c.path)).Info("to a file")
	if out := readFile(t, other); !strings.HasPrefix(out, "time=") || !strings.Contains(out, `msg="to a file"`) {
		t.Errorf("non-journal line %q lacks its time or message", out)
	}
	c.none(t)
}

func TestStreamNamedOnce(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, slog.LevelInfo).With("stream", "cam-0001", "op", "PutMedia")
	log.Warn("ack late", "stream", "cam-0001", "ms", 900)
	if out := buf.String(); strings.Count(out, "stream=") != 1 || !strings.Contains(out, `msg="ack late" stream=cam-0001 op=PutMedia ms=900`) {
		t.Errorf("text line %q", out)
	}

	f := createFile(t, "stderr")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	c := newCollector(t)
	jlog := New(f, slog.LevelInfo, WithJournalSocket(c.path)).With("stream", "cam-0001")
	jlog.With("stream", "cam-0002").Warn("ack late", "stream", "cam-0003")
	entry := string(c.next(t))
	if strings.Count(entry, "STREAM=") != 1 || !strings.Contains(entry, "STREAM=cam-0003\n") {
		t.Errorf("entry %q does not name the last stream once", entry)
	}
}
