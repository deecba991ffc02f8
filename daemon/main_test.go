package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSubcommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, flag := range []string{"-h", "-help", "--help"} {
			code, out, errOut := runCLI(t, c.name, flag)
			if code != exitOK {
				t.Errorf("%s %s: exit %d; stderr %q", c.name, flag, code, errOut)
			}
			if !strings.HasPrefix(out, "Usage: kvscamd "+c.name) {
				t.Errorf("%s %s: stdout %q does not start with the usage line", c.name, flag, out)
			}
			if len(strings.Split(strings.TrimSpace(out), "\n")) < 3 {
				t.Errorf("%s %s: usage does not say what the command does: %q", c.name, flag, out)
			}
			if errOut != "" {
				t.Errorf("%s %s: unexpected stderr %q", c.name, flag, errOut)
			}
		}
		// "kvscamd help NAME" is the same as "kvscamd NAME -h".
		code, out, _ := runCLI(t, "help", c.name)
		if code != exitOK || !strings.HasPrefix(out, "Usage: kvscamd "+c.name) {
			t.Errorf("help %s: exit %d, stdout %q", c.name, code, out)
		}
	}
}

func TestTopLevelUsage(t *testing.T) {
	code, _, errOut := runCLI(t)
	if code != exitUsage || !strings.Contains(errOut, "Commands:") {
		t.Errorf("no arguments: exit %d, stderr %q", code, errOut)
	}
	code, out, _ := runCLI(t, "-h")
	if code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(out, "\n  "+c.name+" ") {
			t.Errorf("-h does not list %s:\n%s", c.name, out)
		}
	}
}

func TestUnknownSubcommand(t *testing.T) {
	code, out, errOut := runCLI(t, "frobnicate")
	if code != exitUsage {
		t.Errorf("exit %d; want %d", code, exitUsage)
	}
	if out != "" || !strings.Contains(errOut, `kvscamd: unknown command "frobnicate"`) || !strings.Contains(errOut, "Commands:") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
}

func TestBadFlag(t *testing.T) {
	for _, c := range commands {
		code, out, errOut := runCLI(t, c.name, "-no-such-flag")
		if code != exitUsage {
			t.Errorf("%s -no-such-flag: exit %d; want %d", c.name, code, exitUsage)
		}
		if out != "" || !strings.Contains(errOut, "flag provided but not defined: -no-such-flag") || !strings.Contains(errOut, "Usage: kvscamd "+c.name) {
			t.Errorf("%s -no-such-flag: stdout %q stderr %q", c.name, out, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := runCLI(t, "version")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[0] != "kvscamd "+version || !strings.HasPrefix(lines[1], "commit ") || !strings.HasPrefix(lines[2], "go1.") {
		t.Errorf("version output %q", out)
	}
	if code, _, errOut := runCLI(t, "version", "extra"); code != exitUsage || !strings.Contains(errOut, `kvscamd version: unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d, stderr %q", code, errOut)
	}
}

// Exit codes and the "kvscamd <cmd>: <error>" form, independent of which
// subcommands are implemented.
func TestReport(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{nil, 0, ""},
		{errNotAvailable, 2, "kvscamd x: not yet available\n"},
		{usageErrorf("bad -fps %d", 0), 2, "kvscamd x: bad -fps 0\n"},
		{&exitError{code: 0}, 0, ""},
		{&exitError{code: 2}, 2, ""},
		{context.DeadlineExceeded, 1, "kvscamd x: context deadline exceeded\n"},
	} {
		var buf bytes.Buffer
		if code := report(&buf, "x", tc.err); code != tc.code || buf.String() != tc.msg {
			t.Errorf("report(%v) = %d, %q; want %d, %q", tc.err, code, buf.String(), tc.code, tc.msg)
		}
	}
}
