//go:build nspawntest

package nspawntest

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

const (
	clipInMachine = "/srv/kvscamd-test/clip.h264"
	debInMachine  = "/srv/kvscamd-test/kvscamd.deb"
	unit          = "kvscamd.service"
	// testWatchdog shortens the unit's WatchdogSec= (drop-in) so that a
	// stall is seen in seconds; the daemon derives its limits from it.
	testWatchdog = 4 * time.Second
)

// config is the machine's kvscamd.toml: cam-1 replays the clip to the
// local KVS endpoint on the host, cam-2 is a camera that is not plugged in.
func config(endpoint string, c credentialsT, extra string) string {
	return fmt.Sprintf(`thing_name = "cam-1"
region = "eu-west-1"
state_dir = "/var/lib/kvscamd"
# The machine's kernel clock state is the host's, which may say unsynchronised.
clock_sync = "trust"
%s
[credentials]
source = "static"
access_key_id = %q
secret_access_key = %q
session_token = %q

[kvs]
endpoint = %q

[[stream]]
name = "cam-1"
driver = "file"
path = %q
loop = true
realtime = true
fps = 30
ring_size = "64MiB"

[[stream]]
name = "cam-2"
driver = "v4l2"
device = "/dev/video7"
ring_size = "16MiB"
`, extra, c.key, c.secret, c.token, endpoint, clipInMachine)
}

type credentialsT struct{ key, secret, token string }

func TestInstalledService(t *testing.T) {
	deb := os.Getenv("KVSCAMD_DEB")
	if deb == "" {
		t.Fatal("KVSCAMD_DEB is not set: run make test-systemd, which builds the package with make deb-amd64")
	}
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("KVSCAMD_DEB: %v (make deb-amd64 builds it)", err)
	}
	began := time.Now()
	root := debianRoot(t)
	srv := kvslocal.Start(t, kvslocal.Options{})
	for _, name := range []string{"cam-1", "cam-2"} {
		if _, err := srv.CreateStream(name, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	ac := srv.IssueCredentials(6 * time.Hour)
	creds := credentialsT{ac.AccessKeyID, ac.SecretAccessKey, ac.SessionToken}

	m := boot(t, root, testclips.Get("high-aud.h264").Path()+":"+clipInMachine, deb+":"+debInMachine)
	t.Logf("machine booted after %s", time.Since(began).Round(time.Millisecond))

	// Install: user, directories and the unit, nothing started.
	m.must("dpkg", "-i", debInMachine)
	if out := m.must("getent", "passwd", "kvscamd"); !strings.Contains(out, ":/var/lib/kvscamd:") {
		t.Errorf("user kvscamd: %q", out)
	}
	if out := m.must("id", "-nG", "kvscamd"); !strings.Contains(out, "video") {
		t.Errorf("kvscamd is not in group video: %q", out)
	}
	if out := strings.TrimSpace(m.must("stat", "-c", "%a %U %G", "/etc/kvscamd/kvscamd.toml", "/etc/kvscamd", "/var/lib/kvscamd")); out != "640 root kvscamd\n750 root kvscamd\n750 kvscamd kvscamd" {
		t.Errorf("modes and owners of the configuration and state:\n%s", out)
	}
	if st, _ := m.run("systemctl", "is-enabled", unit); strings.TrimSpace(st) != "disabled" {
		t.Errorf("after install the unit is %q, want disabled (enabled by the administrator once configured)", strings.TrimSpace(st))
	}
	if st := m.show(unit, "ActiveState"); st != "inactive" {
		t.Errorf("after install the unit is %s, want inactive", st)
	}

	// Configure: the file, and a drop-in with the test's watchdog, a
	// short restart delay and the stall test hook.
	m.writeFile("/etc/kvscamd/kvscamd.toml", 0o640, config(srv.URL, creds, ""))
	m.writeFile("/etc/systemd/system/kvscamd.service.d/test.conf", 0o644, fmt.Sprintf(
		"[Service]\nWatchdogSec=%d\nRestartSec=1\nEnvironment=KVSCAMD_TEST_STALL=cam-1/fragmenter\n", int(testWatchdog.Seconds())))
	checkOut, _ := m.run("runuser", "-u", "kvscamd", "--", "kvscamd", "check")
	for _, want := range []string{"config: ok", "credentials: ok", "kvs: ok", "clock: ok"} {
		if !strings.Contains(checkOut, want) {
			t.Errorf("kvscamd check as user kvscamd: no %q in:\n%s", want, checkOut)
		}
	}

	// Start: systemctl returns once the unit is active, which for
	// Type=notify is after READY=1. The daemon logs "kvscamd running"
	// just before it notifies; systemd's "Started" line must follow it.
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "enable", "--now", unit)
	if st := m.show(unit, "ActiveState"); st != "active" {
		t.Fatalf("unit %s after start", st)
	}
	if txt := m.show(unit, "StatusText"); !strings.Contains(txt, "cam-1") {
		t.Errorf("StatusText %q: READY came without the daemon's STATUS", txt)
	}
	entries := journal(t, m)
	running, started := -1, -1
	for i, e := range entries {
		if e["SYSLOG_IDENTIFIER"] != "systemd" && strings.Contains(e["MESSAGE"], "kvscamd running") && running < 0 {
			running = i
		}
		if e["SYSLOG_IDENTIFIER"] == "systemd" && strings.HasPrefix(e["MESSAGE"], "Started kvscamd") {
			started = i
		}
	}
	if running < 0 || started < 0 || started < running {
		t.Errorf("journal order: daemon running at %d, systemd Started at %d (want running first)", running, started)
	}
	waitStatus(t, m, "cam-1 uploads", 60*time.Second, func(s status.Stream) bool { return s.FragmentsAcked >= 2 })

	// No network and a camera that is not there: no restart in three
	// watchdog periods; the problem shows in the status instead.
	srv.Down(kvslocal.Refused, 0)
	downSince := time.Now()
	waitStatus(t, m, "the uploader to notice the network is down", 30*time.Second, func(s status.Stream) bool {
		return strings.HasPrefix(s.Uploader.State, "backing off")
	})
	m.waitFor("three watchdog periods", 3*testWatchdog+time.Second, func() bool { return time.Since(downSince) > 3*testWatchdog })
	if n := m.show(unit, "NRestarts"); n != "0" {
		t.Fatalf("NRestarts=%s with the network down and cam-2 unplugged: the watchdog must not fire for data-flow problems", n)
	}
	if st := m.show(unit, "ActiveState"); st != "active" {
		t.Fatalf("unit %s with the network down", st)
	}
	srv.Up()

	// Stall: the test hook hangs cam-1's fragmenter loop; the pings stop,
	// systemd's watchdog kills the daemon and restarts it.
	stallAt := time.Now()
	m.must("systemctl", "kill", "--kill-who=main", "-s", "SIGUSR2", unit)
	m.waitFor("a watchdog restart", 4*testWatchdog+10*time.Second, func() bool { return m.show(unit, "NRestarts") == "1" })
	m.waitFor("the unit to be active again", 30*time.Second, func() bool { return m.show(unit, "ActiveState") == "active" })
	t.Logf("stall to active again: %s", time.Since(stallAt).Round(time.Millisecond))
	if j := m.must("journalctl", "-u", unit, "--no-pager", "-o", "cat"); !strings.Contains(j, "Watchdog timeout") || !strings.Contains(j, "stuck") {
		t.Errorf("journal has no watchdog timeout after a stuck stage:\n%s", tail([]byte(j), 30))
	}
	waitStatus(t, m, "uploads after the restart", 60*time.Second, func(s status.Stream) bool { return s.FragmentsAcked >= 2 })

	// Upgrade (the same package again is an upgrade to dpkg): postinst
	// restarts the running service, and the configuration keeps its
	// owner and mode.
	pid := m.show(unit, "MainPID")
	m.must("dpkg", "-i", debInMachine)
	m.waitFor("the upgrade to restart the service", 30*time.Second, func() bool {
		return m.show(unit, "ActiveState") == "active" && m.show(unit, "MainPID") != pid
	})
	if out := strings.TrimSpace(m.must("stat", "-c", "%a %U %G", "/etc/kvscamd/kvscamd.toml")); out != "640 root kvscamd" {
		t.Errorf("configuration after the upgrade: %s", out)
	}

	// Reload applies a changed setting.
	m.writeFile("/etc/kvscamd/kvscamd.toml", 0o640, strings.Replace(config(srv.URL, creds, ""), `ring_size = "64MiB"`, "ring_size = \"64MiB\"\nupload_rate_limit = \"4MB/s\"", 1))
	m.must("systemctl", "reload", unit)
	waitStatus(t, m, "upload_rate_limit from the reloaded file", 30*time.Second, func(s status.Stream) bool { return s.Uploader.RateLimit == 4_000_000 })

	// Stop while video flows and the endpoint stalls its ACKs: the
	// slowest stop, which TimeoutStopSec= must cover.
	release, err := srv.StallAcks("cam-1")
	if err != nil {
		t.Fatal(err)
	}
	stop1 := timedStop(t, m)
	release()
	t.Logf("stop while uploading with ACKs stalled: %s", stop1)

	// Start again, stop capture, let everything be acknowledged, stop:
	// then every fragment the ring ever stored (before the watchdog kill
	// too) must be at the endpoint.
	m.must("systemctl", "start", unit)
	m.must("kvscamd", "capture", "-stream", "cam-1", "off")
	waitStatus(t, m, "every stored fragment acknowledged", 60*time.Second, func(s status.Stream) bool {
		return !s.Capture && s.FragmentsUnacked == 0 && s.FragmentsStored > 0
	})
	stop2 := timedStop(t, m)
	t.Logf("stop with capture off: %s", stop2)
	checkNothingLost(t, m, srv)

	// journald gets structured fields, not text.
	entries = journal(t, m)
	var streamField, prio bool
	for _, e := range entries {
		if e["STREAM"] == "cam-1" {
			streamField = true
			if _, err := strconv.Atoi(e["PRIORITY"]); err == nil {
				prio = true
			}
		}
	}
	if !streamField || !prio {
		sample := ""
		for _, e := range entries {
			if e["SYSLOG_IDENTIFIER"] == "kvscamd" {
				b, _ := json.Marshal(e)
				sample = string(b)
			}
		}
		t.Errorf("journal -o json: no entry with STREAM=cam-1 (%v) and a PRIORITY (%v); the daemon's last entry: %s", streamField, prio, sample)
	}

	// Remove keeps the video and the configuration; purge keeps the
	// video and removes the configuration.
	m.must("apt-get", "remove", "-y", "kvscamd")
	if _, err := m.run("test", "-f", "/etc/kvscamd/kvscamd.toml"); err != nil {
		t.Errorf("remove deleted the configuration")
	}
	ringFiles := func() string {
		out, _ := m.run("sh", "-c", "ls -A /var/lib/kvscamd/cam-1 | wc -l")
		return strings.TrimSpace(out)
	}
	if n := ringFiles(); n == "0" || n == "" {
		t.Errorf("remove: /var/lib/kvscamd/cam-1 is empty or gone")
	}
	m.must("apt-get", "purge", "-y", "kvscamd")
	if _, err := m.run("test", "-e", "/etc/kvscamd"); err == nil {
		t.Errorf("purge left /etc/kvscamd")
	}
	if n := ringFiles(); n == "0" || n == "" {
		t.Errorf("purge: /var/lib/kvscamd/cam-1 is empty or gone")
	}
	t.Logf("whole test after %s", time.Since(began).Round(time.Second))
}

// timedStop runs systemctl stop and checks it succeeded within the
// unit's stop timeout and that the daemon exited 0.
func timedStop(t *testing.T, m *machine) time.Duration {
	t.Helper()
	limitUs, _ := strconv.ParseInt(m.show(unit, "TimeoutStopUSec"), 10, 64)
	if limitUs == 0 {
		// systemctl show prints a duration like "1min 30s" by default.
		if d, err := time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(m.show(unit, "TimeoutStopUSec"), "min ", "m"), " ", "")); err == nil {
			limitUs = d.Microseconds()
		}
	}
	start := time.Now()
	m.must("systemctl", "stop", unit)
	took := time.Since(start)
	if res, code := m.show(unit, "Result"), m.show(unit, "ExecMainStatus"); res != "success" || code != "0" {
		t.Errorf("stop: Result=%s ExecMainStatus=%s, want success and 0", res, code)
	}
	if limitUs > 0 && took >= time.Duration(limitUs)*time.Microsecond {
		t.Errorf("stop took %s, over TimeoutStopSec %s", took, time.Duration(limitUs)*time.Microsecond)
	}
	return took
}

// checkNothingLost reads cam-1's ring (the service is stopped) and
// checks that the endpoint received every fragment in it.
func checkNothingLost(t *testing.T, m *machine, srv *kvslocal.Server) {
	t.Helper()
	got := map[int64]bool{}
	for _, f := range srv.Fragments("cam-1") {
		got[f.Timecode] = true
	}
	r, err := ring.Open(m.path("/var/lib/kvscamd/cam-1"), ring.Options{Capacity: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stored, missing := 0, 0
	err = r.Range(time.Time{}, time.Time{}, func(_ ring.ID, f fragmenter.Fragment) error {
		stored++
		if !got[f.Timecode] {
			missing++
			t.Errorf("fragment %d (%s) is in the ring but never reached the endpoint", f.Timecode, time.UnixMilli(f.Timecode).UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stored < 10 {
		t.Errorf("only %d fragments in the ring; the test captured too little to show anything", stored)
	}
	t.Logf("%d fragments in the ring, %d at the endpoint, %d missing", stored, len(got), missing)
}

// journal returns the unit's journal entries (string fields only).
func journal(t *testing.T, m *machine) []map[string]string {
	t.Helper()
	out := m.must("journalctl", "-u", unit, "-o", "json", "--no-pager")
	var entries []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			continue
		}
		e := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				e[k] = s
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// waitStatus polls "kvscamd status -json" in the machine until cam-1's
// status satisfies cond.
func waitStatus(t *testing.T, m *machine, what string, d time.Duration, cond func(status.Stream) bool) {
	t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for {
		out, err := m.run("kvscamd", "status", "-json")
		last = out
		if err != nil {
			last = err.Error()
		}
		var st status.Status
		if err == nil && json.Unmarshal([]byte(out), &st) == nil {
			for _, s := range st.Streams {
				if s.Name == "cam-1" && cond(s) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last status:\n%s", d, what, last)
		}
		time.Sleep(300 * time.Millisecond) // polls the daemon's status
	}
}
