//go:build nspawntest

package nspawntest

import (
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
	// dpkg syncs every file it unpacks, which makes debootstrap on a
	// disk several times slower than in memory: build in a tmpfs, then
	// copy the finished root to the cache.
	build, err := os.MkdirTemp(cache, "tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(build)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2g,mode=0755", "tmpfs", build).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs for debootstrap: %v: %s", err, out)
	}
	defer exec.Command("umount", build).Run()
	start := time.Now()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(rootPackages, ","), suite, build, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("debootstrap %s from %s: %v\n%s", suite, mirror, err, tail(out, 30))
	}
	tmp := dir + ".partial"
	os.RemoveAll(tmp)
	if out, err := exec.Command("cp", "-a", build, tmp).CombinedOutput(); err != nil {
		t.Fatalf("copy the Debian root to the cache: %v: %s", err, out)
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

func tail(b []byte, lines int) string {
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
