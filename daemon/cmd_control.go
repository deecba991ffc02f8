package main

import (
	"context"
	"fmt"
	"io"

	"github.com/kvscamd/kvscamd/daemon/status"
)

const uploadAbout = `
Asks the running daemon to upload the fragments of a stream that overlap
the time range [-from, -to) (RFC 3339, e.g. 2026-12-02T14:00:00Z; either may
be left out for an open end). In record mode this is how recorded video
reaches Kinesis Video Streams; fragments already uploaded are not sent
again. Prints how many fragments and bytes were queued.`

// cmdUpload queues a time range of a stream for upload.
func cmdUpload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("upload", "-stream NAME [-from TIME] [-to TIME] [-socket PATH]", uploadAbout)
	name := fs.String("stream", "", "stream `name`")
	fromS := fs.String("from", "", "start `time`, RFC 3339")
	toS := fs.String("to", "", "end `time`, RFC 3339")
	socket := socketFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *name == "" {
		return usageErrorf("-stream is required; kvscamd status lists the streams")
	}
	from, err := parseTimeFlag("from", *fromS)
	if err != nil {
		return err
	}
	to, err := parseTimeFlag("to", *toS)
	if err != nil {
		return err
	}
	res, err := status.NewClient(*socket).Do(ctx, status.Command{Op: status.OpUpload, Stream: *name, From: from, To: to})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%s)\n", res.Message, humanBytes(res.Bytes))
	return nil
}

const captureAbout = `
Turns capture of a stream on or off in the running daemon. Off stores the
fragment being captured and then writes nothing more to the ring; uploads
of what the ring holds go on.`

// cmdCapture switches a stream's capture.
func cmdCapture(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("capture", "-stream NAME on|off [-socket PATH]", captureAbout)
	name := fs.String("stream", "", "stream `name`")
	socket := socketFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *name == "" {
		return usageErrorf("-stream is required; kvscamd status lists the streams")
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "on" && fs.Arg(0) != "off") {
		return usageErrorf("say on or off, e.g. kvscamd capture -stream %s off", *name)
	}
	on := fs.Arg(0) == "on"
	res, err := status.NewClient(*socket).Do(ctx, status.Command{Op: status.OpCapture, Stream: *name, On: &on})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Message)
	return nil
}
