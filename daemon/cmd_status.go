package main

import (
	"context"
	"io"
)

const statusAbout = `
Asks the running daemon over its unix socket for the state of every stream:
capture, ring buffer fill, oldest unacknowledged fragment, upload, credentials
and clock.`

// cmdStatus queries the running daemon.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "[-json]", statusAbout)
	fs.Bool("json", false, "print the status as JSON")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return errNotAvailable
}
