package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kvscamd/kvscamd/daemon/config"
)

// exitError carries an exit status other than 1 through a returned error.
// A nil err means the message has already been printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// errNotAvailable is returned by subcommands that are not built yet.
var errNotAvailable = &exitError{code: exitUsage, err: errors.New("not yet available")}

// usageErrorf reports a bad command line: exit status 2.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// newFlagSet returns a FlagSet for subcommand name. synopsis is the
// argument summary after the name; about says what the command does.
func newFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("kvscamd "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: kvscamd %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(about))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args. -h prints the usage on stdout and yields an
// exit status of 0; a bad flag prints the problem and the usage on stderr
// and yields 2. Callers return the error as it is.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(buf.Bytes())
		return &exitError{code: exitOK}
	case err != nil:
		_, _ = stderr.Write(buf.Bytes())
		return &exitError{code: exitUsage}
	}
	// Later output (e.g. PrintDefaults from a command) goes to stderr.
	fs.SetOutput(stderr)
	return nil
}

// noArgs rejects positional arguments for commands that take none.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q; see %s -h", fs.Arg(0), fs.Name())
	}
	return nil
}

// configFlag registers the -config flag shared by several commands.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", config.DefaultPath, "configuration `file`")
}
