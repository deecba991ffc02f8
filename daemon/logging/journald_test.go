package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// systemdTool finds one of systemd's programs, failing (not skipping) with
// how to install it: this test is what shows the entries are real journal
// entries.
func systemdTool(t *testing.T, pkg string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if _, err := os.Stat(c); err == nil {
				return c
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatalf("none of %v found; install the Debian package %s (apt-get install %s)", candidates, pkg, pkg)
	return ""
}

// TestJournaldRoundTrip sends entries through the handler to a socket of
// the test's own, stores them in a journal file with systemd-journal-remote
// (which reads the export format, the native protocol's entries with a
// receive time that journald would add and a blank line after each) and
// queries the file with journalctl the way an operator would.
func TestJournaldRoundTrip(t *testing.T) {
	remote := systemdTool(t, "systemd-journal-remote",
		"/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
	journalctl := systemdTool(t, "systemd", "journalctl")

	f := createFile(t, "stderr")
	t.Setenv("JOURNAL_STREAM", identity(t, f))
	c := newCollector(t)
	clock := newFakeClock()
	log := New(f, slog.LevelDebug, WithJournalSocket(c.path), WithClock(clock.now))

	cam := log.With("stream", "cam-0001")
	cam.Info("stream started")
	for i := 0; i < 3; i++ {
		cam.Warn("fragment rejected", "fragment_timecode", int64(1700000000123), "kvs_error_id", "4002",
			"op", "PutMedia", slog.Group("upload", "attempt", 2))
	}
	log.With("stream", "cam-0002").Warn("link down")
	cam.Error("put failed\nafter 5 retries", "op", "PutMedia", "err", errors.New("connection reset"))
	cam.Debug("tick")
	const sent = 6 // the two folded copies come back as one summary

	var export bytes.Buffer
	base := clock.now().UnixMicro()
	for i := 0; i < sent; i++ {
		fmt.Fprintf(&export, "__REALTIME_TIMESTAMP=%d\n%s\n", base+int64(i), c.next(t))
	}
	c.none(t)
	if out := readFile(t, f); out != "" {
		t.Fatalf("fell back to text: %q", out)
	}

	file := filepath.Join(t.TempDir(), "kvscamd.journal")
	cmd := exec.Command(remote, "--output="+file, "-")
	cmd.Stdin = &export
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
	} else if !strings.Contains(string(out), fmt.Sprintf("writing %d entries", sent)) {
		t.Fatalf("systemd-journal-remote did not store all %d entries:\n%s", sent, out)
	}

	query := func(args ...string) []map[string]any {
		t.Helper()
		cmd := exec.Command(journalctl, append([]string{"--file=" + file, "--no-pager", "-o", "json"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("journalctl %v: %v\n%s", args, err, stderr.Bytes())
		}
		var entries []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("journalctl line %q: %v", sc.Bytes(), err)
			}
			entries = append(entries, e)
		}
		return entries
	}

	if all := query("-t", Identifier); len(all) != sent {
		t.Errorf("journalctl -t %s found %d entries, want %d", Identifier, len(all), sent)
	}

	got := query("STREAM=cam-0001", "-p", "warning")
	want := []map[string]string{
		{"MESSAGE": "fragment rejected", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "kvscamd", "STREAM": "cam-0001",
			"FRAGMENT_TIMECODE": "1700000000123", "KVS_ERROR_ID": "4002", "OP": "PutMedia", "UPLOAD_ATTEMPT": "2"},
		{"MESSAGE": "fragment rejected (repeated 2 times)", "PRIORITY": "4", "STREAM": "cam-0001",
			"FRAGMENT_TIMECODE": "1700000000123", "REPEATED": "2"},
		{"MESSAGE": "put failed\nafter 5 retries", "PRIORITY": "3", "STREAM": "cam-0001",
			"OP": "PutMedia", "ERROR": "connection reset"},
	}
	if len(got) != len(want) {
		t.Fatalf("journalctl STREAM=cam-0001 -p warning found %d entries, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		for name, value := range w {
			if s, ok := got[i][name].(string); !ok || s != value {
				t.Errorf("entry %d: %s = %#v, want %q", i, name, got[i][name], value)
			}
		}
		if s, _ := got[i]["CODE_FUNC"].(string); !strings.Contains(s, "TestJournaldRoundTrip") {
			t.Errorf("entry %d: CODE_FUNC = %#v, want this test", i, got[i]["CODE_FUNC"])
		}
	}
	if other := query("STREAM=cam-0002"); len(other) != 1 || other[0]["MESSAGE"] != "link down" {
		t.Errorf("journalctl STREAM=cam-0002 found %v", other)
	}
}
