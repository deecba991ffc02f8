package nspawntest

import (
	"bufio"
	"strings"
	"testing"
)

// suite is the Debian release of the test root (Debian 12, as Raspberry
// Pi OS bookworm).
const suite = "bookworm"

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
