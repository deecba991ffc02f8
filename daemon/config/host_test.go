package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvscamd/kvscamd/internal/testclips"
)

// hostConfig is a valid configuration with its state below a fresh
// temporary directory and one file stream replaying a test clip.
func hostConfig(t *testing.T) *Config {
	t.Helper()
	c := mustParse(t, minimal)
	c.StateDir = filepath.Join(t.TempDir(), "state")
	c.Streams[0].Driver = DriverFile
	c.Streams[0].Path = testclips.Get("baseline-repeat.h264").Path()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return c
}

// wantProblem fails unless ps holds a problem for key whose message
// contains every one of parts.
func wantProblem(t *testing.T, ps Problems, key string, parts ...string) {
	t.Helper()
	for _, p := range ps {
		if p.Key != key {
			continue
		}
		for _, part := range parts {
			if !strings.Contains(p.Message, part) {
				t.Errorf("%s: %q does not contain %q", key, p.Message, part)
			}
		}
		return
	}
	t.Errorf("no problem for %s in %v", key, ps)
}

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRingDir(t *testing.T) {
	c := &Config{StateDir: "/var/lib/kvscamd"}
	if got := c.RingDir("cam-1"); got != "/var/lib/kvscamd/cam-1" {
		t.Errorf("RingDir = %q", got)
	}
}

func TestCheckHostAccepts(t *testing.T) {
	// A missing state_dir below a writable directory: the ring creates it.
	c := hostConfig(t)
	if ps := c.CheckHost(); ps != nil {
		t.Fatalf("CheckHost = %v", ps)
	}
	if _, err := os.Stat(c.StateDir); !os.IsNotExist(err) {
		t.Errorf("CheckHost created %s (stat: %v)", c.StateDir, err)
	}

	// Existing state and ring directories, and an exec command on PATH.
	if err := os.MkdirAll(c.RingDir(c.Streams[0].Name), 0o750); err != nil {
		t.Fatal(err)
	}
	c.Streams = append(c.Streams, Stream{Name: "second", Driver: DriverExec, Command: []string{"sh", "-c", "true"}})
	if ps := c.CheckHost(); ps != nil {
		t.Fatalf("CheckHost = %v", ps)
	}
	for _, dir := range []string{c.StateDir, c.RingDir(c.Streams[0].Name)} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), probePrefix) {
				t.Errorf("probe file %s left in %s", e.Name(), dir)
			}
		}
	}
}

func TestCheckHostProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(t *testing.T, c *Config)
		key   string
		parts []string
	}{
		{"state_dir is a file", func(t *testing.T, c *Config) { writeFile(t, c.StateDir) },
			"state_dir", []string{"is not a directory", "set state_dir to a directory"}},
		{"state_dir below a file", func(t *testing.T, c *Config) {
			writeFile(t, c.StateDir)
			c.StateDir = filepath.Join(c.StateDir, "below")
		}, "state_dir", []string{"cannot be created because", "is not a directory"}},
		{"ring directory is a file", func(t *testing.T, c *Config) {
			if err := os.MkdirAll(c.StateDir, 0o750); err != nil {
				t.Fatal(err)
			}
			writeFile(t, c.RingDir(c.Streams[0].Name))
		}, "stream[0].name", []string{"ring directory", "is not a directory", "rename the stream"}},
		{"file missing", func(t *testing.T, c *Config) { c.Streams[0].Path = filepath.Join(t.TempDir(), "none.h264") },
			"stream[0].path", []string{"no such file", "set path to an Annex-B H.264 file"}},
		{"file not H.264", func(t *testing.T, c *Config) {
			c.Streams[0].Path = filepath.Join(t.TempDir(), "clip.h264")
			writeFile(t, c.Streams[0].Path)
		}, "stream[0].path", []string{"not an Annex-B H.264 stream"}},
		{"command missing", func(t *testing.T, c *Config) {
			c.Streams[0].Driver = DriverExec
			c.Streams[0].Command = []string{"no-such-encoder-here", "-o", "-"}
		}, "stream[0].command", []string{"no-such-encoder-here", "install it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := hostConfig(t)
			tc.edit(t, c)
			ps := c.CheckHost()
			if len(ps) != 1 {
				t.Errorf("want one problem, got %v", ps)
			}
			wantProblem(t, ps, tc.key, tc.parts...)
		})
	}
}
