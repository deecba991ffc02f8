package main

import (
	"context"
	"io"
)

const exportAbout = `
Writes the fragments of one stream's ring buffer that fall in a time range
(by default all of them) into one MKV file, whether or not they have been
uploaded yet.`

// cmdExport copies a time range of a ring buffer into an MKV file.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "[-config FILE] -stream NAME [-from RFC3339] [-to RFC3339] -o OUT.mkv", exportAbout)
	configFlag(fs)
	fs.String("stream", "", "stream `name`")
	fs.String("from", "", "start of the range, RFC 3339 `time` (default: the oldest fragment)")
	fs.String("to", "", "end of the range, RFC 3339 `time` (default: the newest fragment)")
	fs.String("o", "", "output MKV `file`")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return errNotAvailable
}
