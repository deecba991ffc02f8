//go:build nspawntest

package nspawntest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machine is a Debian root booted by systemd-nspawn, with the host's
// network (so a server on the host's 127.0.0.1 is reachable) and a
// volatile overlay over the root: what the test installs is gone when the
// machine stops.
type machine struct {
	t      *testing.T
	nspawn *exec.Cmd
	exited chan struct{}
	leader int // the machine's PID 1, as the host sees it
	log    *os.File
}

// boot starts the machine and waits until its boot finished. binds are
// "HOST:MACHINE" read-only bind mounts.
func boot(t *testing.T, root string, binds ...string) *machine {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "nspawn.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-q", "-D", root, "--volatile=overlay", "--boot", "--register=no", "--keep-unit",
		"--machine=kvscamdtest"}
	for _, b := range binds {
		args = append(args, "--bind-ro="+b)
	}
	// firstboot would wait for input on the console of a fresh root.
	args = append(args, "systemd.firstboot=off")
	cmd := exec.Command("systemd-nspawn", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	m := &machine{t: t, nspawn: cmd, exited: make(chan struct{}), log: logf}
	go func() {
		cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(m.shutdown)
	deadline := time.Now().Add(60 * time.Second)
	for m.leader == 0 {
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", m.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no PID 1 in the machine after 60 s:\n%s", m.output())
		}
		m.leader = findLeader(cmd.Process.Pid)
		if m.leader == 0 {
			time.Sleep(50 * time.Millisecond) // polls /proc; nspawn reports no PID
		}
	}
	// Until the manager listens, systemctl fails at once: retry.
	for {
		out, _ := m.run("systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			if state == "degraded" {
				failed, _ := m.run("systemctl", "--failed", "--no-legend")
				t.Logf("machine booted degraded: %s", failed)
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("machine did not finish booting: %q\n%s", state, m.output())
		}
		time.Sleep(200 * time.Millisecond) // the manager is not up yet
	}
}

// findLeader returns the PID of a process below parent that is PID 1 of
// its own PID namespace: the machine's init.
func findLeader(parent int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		var ppid int
		var nspid []string
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
				nspid = strings.Fields(v)
			}
		}
		if len(nspid) != 2 || nspid[1] != "1" {
			continue
		}
		for p, depth := ppid, 0; p > 1 && depth < 4; depth++ {
			if p == parent {
				return pid
			}
			p = parentOf(p)
		}
	}
	return 0
}

func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// run runs a command inside the machine and returns its combined output.
func (m *machine) run(args ...string) (string, error) {
	return m.runInput(nil, args...)
}

// runInput runs a command inside the machine with stdin.
func (m *machine) runInput(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nargs := append([]string{"-t", strconv.Itoa(m.leader), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nargs...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// must runs a command in the machine and fails the test if it fails.
func (m *machine) must(args ...string) string {
	m.t.Helper()
	out, err := m.run(args...)
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

// writeFile writes a file inside the machine.
func (m *machine) writeFile(path string, mode os.FileMode, data string) {
	m.t.Helper()
	if _, err := m.runInput([]byte(data), "sh", "-c", fmt.Sprintf("mkdir -p \"$(dirname %s)\" && cat > %s && chmod %o %s", path, path, mode, path)); err != nil {
		m.t.Fatal(err)
	}
}

// path returns a machine path as the host sees it.
func (m *machine) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", m.leader, p) }

// show returns a unit property.
func (m *machine) show(unit, prop string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("systemctl", "show", "-p", prop, "--value", unit))
}

// waitFor polls cond (a cheap query of the machine) until it holds.
func (m *machine) waitFor(what string, d time.Duration, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			m.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond) // polls the machine's state
	}
}

func (m *machine) output() string {
	data, _ := os.ReadFile(m.log.Name())
	return tail(data, 40)
}

// shutdown powers the machine off (SIGTERM to nspawn asks its init to
// shut down) and kills it if that takes too long.
func (m *machine) shutdown() {
	select {
	case <-m.exited:
		return
	default:
	}
	m.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-m.nspawn.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
}
