package main

import (
	"context"
	"io"
)

// cmdMux stands in for the offline muxer until it is implemented.
func cmdMux(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mux", "-i IN.h264 -o OUT.mkv -fps N [-start RFC3339] [-fragment 2s]",
		"Converts an Annex-B H.264 file into a KVS-conformant MKV file.")
	fs.String("i", "", "input Annex-B H.264 `file`")
	fs.String("o", "", "output MKV `file`")
	fs.Int("fps", 0, "frame rate of the input")
	fs.String("start", "", "timestamp of the first frame, RFC 3339 (default now)")
	fs.String("fragment", "2s", "target fragment `duration`")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	return errNotAvailable
}
