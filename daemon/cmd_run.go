package main

import (
	"context"
	"io"
)

const runAbout = `
Runs the service: captures every configured stream, cuts it into fragments,
keeps them in the on-disk ring buffer below state_dir and uploads them to
Kinesis Video Streams. Stops cleanly on SIGINT or SIGTERM. Under systemd it
reports readiness and watchdog pings through NOTIFY_SOCKET.`

// cmdRun is the service entry point.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[-config FILE]", runAbout)
	configFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return errNotAvailable
}
