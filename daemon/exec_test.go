package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as kvscamd: with this variable set, TestMain
// runs main() so that tests can check real exit statuses and streams.
const asKvscamd = "KVSCAMD_TEST_RUN_MAIN"

// With this variable set, the test binary runs signalChild instead.
const asSignalChild = "KVSCAMD_TEST_SIGNAL_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(asKvscamd) == "1" {
		os.Args = append([]string{"kvscamd"}, os.Args[1:]...)
		main()
	}
	if os.Getenv(asSignalChild) == "1" {
		signalChild()
	}
	os.Exit(m.Run())
}

// signalChild reports on stdout when signalContext is set up and when it
// is cancelled, then never finishes its "shutdown".
func signalChild() {
	ctx, _ := signalContext()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("stopping")
	for {
		time.Sleep(time.Hour) // a shutdown that hangs
	}
}

// The first SIGTERM cancels the context; the second kills the process.
func TestSecondSignalKills(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), asSignalChild+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// A child that ignores the second signal would block Wait forever.
	guard := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer guard.Stop()
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("child said %q (%v); want %q", lines.Text(), lines.Err(), want)
		}
	}
	expect("ready")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("stopping")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child ended with %v; want killed by SIGTERM", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("child ended with %v; want killed by SIGTERM", err)
	}
}

func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func TestProcessExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "kvscamd " + version + "\n", ""},
		{[]string{"run", "-h"}, 0, "Usage: kvscamd run", ""},
		{nil, 2, "", "Usage:\n  kvscamd <command>"},
		{[]string{"nope"}, 2, "", `kvscamd: unknown command "nope"`},
		{[]string{"status", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
	} {
		code, out, errOut := runBinary(t, tc.args...)
		if code != tc.code || !strings.HasPrefix(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("kvscamd %q: exit %d stdout %q stderr %q; want exit %d, stdout starting %q, stderr containing %q",
				tc.args, code, out, errOut, tc.code, tc.stdout, tc.stderr)
		}
		if tc.stderr == "" && errOut != "" {
			t.Errorf("kvscamd %q: unexpected stderr %q", tc.args, errOut)
		}
	}
}
