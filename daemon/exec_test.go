package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The test binary doubles as kvscamd: with this variable set, TestMain
// runs main() so that tests can check real exit statuses and streams.
const asKvscamd = "KVSCAMD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asKvscamd) == "1" {
		os.Args = append([]string{"kvscamd"}, os.Args[1:]...)
		main()
	}
	os.Exit(m.Run())
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
