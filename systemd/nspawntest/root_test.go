package nspawntest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rootPackages are installed into the Debian root on top of minbase:
// systemd as PID 1 and dbus, as on a Raspberry Pi OS Lite system.
var rootPackages = []string{"systemd", "systemd-sysv", "dbus"}

const suite = "bookworm"

// debianRoot returns a Debian root directory built with debootstrap, from
// the cache under $NSPAWN_CACHE when an earlier run built one from the
// same mirror and package list. The test boots it with a volatile overlay,
// so the cached root is never changed.
func debianRoot(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install debootstrap systemd-container util-linux", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("debootstrap and systemd-nspawn need root: run make test-systemd as root")
	}
	cache := os.Getenv("NSPAWN_CACHE")
	if cache == "" {
		cache = "/var/cache/kvscamd-test"
	}
	mirror, err := aptMirror()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(suite + "\n" + mirror + "\n" + strings.Join(rootPackages, ",")))
	dir := filepath.Join(cache, suite+"-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "sbin", "init")); err == nil {
		t.Logf("Debian root from the cache: %s", dir)
		return dir
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(cache, "building-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(rootPackages, ","), suite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("debootstrap %s from %s: %v\n%s", suite, mirror, err, tail(out, 30))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap built %s in %s", dir, time.Since(start).Round(time.Second))
	return dir
}

// aptMirror returns the Debian mirror this machine's apt uses for the
// suite, from /etc/apt/sources.list and sources.list.d (both formats).
func aptMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(data)); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("no apt source for Debian %s in /etc/apt/sources.list*; debootstrap needs a mirror", suite)
}

// mirrorIn finds a source with suite itself (not -security or -updates)
// and component main, in one-line ("deb URI suite comp") or deb822 form.
func mirrorIn(text string) string {
	var uris, suites []string
	sc := bufio.NewScanner(strings.NewReader(text + "\n\n"))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "deb" && !strings.HasPrefix(f[1], "["):
			if f[2] == suite {
				return f[1]
			}
		case strings.HasPrefix(line, "URIs:"):
			uris = f[1:]
		case strings.HasPrefix(line, "Suites:"):
			suites = f[1:]
		case line == "":
			for _, s := range suites {
				if s == suite && len(uris) > 0 {
					return uris[0]
				}
			}
			uris, suites = nil, nil
		}
	}
	return ""
}

func tail(b []byte, lines int) string {
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func TestMirrorIn(t *testing.T) {
	deb822 := "Types: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
	if got := mirrorIn(deb822); got != "http://m.example/debian" {
		t.Errorf("deb822: %q", got)
	}
	if got := mirrorIn("deb http://x.example/d bookworm-updates main\ndeb http://x.example/d bookworm main\n"); got != "http://x.example/d" {
		t.Errorf("one-line: %q", got)
	}
	if got := mirrorIn("deb http://x.example/d trixie main\n"); got != "" {
		t.Errorf("other suite: %q", got)
	}
}
