package main

import (
	"context"
	"io"
)

const checkAbout = `
Checks the configuration, the files it names, the credentials, the KVS and
MQTT endpoints, the clock and the capture devices. Prints one line per
check, "NAME: ok ..." or "NAME: FAIL reason and fix", for the checks config,
credentials, kvs, mqtt, clock and device. Exits 0 only if all pass.`

// cmdCheck validates a configuration and the environment it needs.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "[-config FILE]", checkAbout)
	configFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return errNotAvailable
}
