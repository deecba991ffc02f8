// Command kvscamd captures H.264 from a camera, keeps it in a crash-safe
// on-disk ring buffer and uploads it to Amazon Kinesis Video Streams.
//
// One binary serves as the service (kvscamd run) and as its operator's
// tool (check, status, mux, export, version). Each subcommand lives in its
// own file (cmd_<name>.go, mux.go) as a function of type commandFunc.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// commandFunc runs one subcommand. args are the arguments after the
// subcommand's name. Returning nil means exit status 0; see exitError for
// other statuses. Cancellation of ctx (SIGINT, SIGTERM) is a normal stop
// and should return nil.
type commandFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

type command struct {
	name    string
	summary string
	run     commandFunc
}

// commands is the dispatch table, in the order the help lists them.
var commands = []command{
	{"run", "run the service: capture, buffer and upload", cmdRun},
	{"check", "validate the configuration, files, credentials, endpoints and clock", cmdCheck},
	{"provision", "give this device its own AWS IoT identity (fleet provisioning)", cmdProvision},
	{"status", "show the state of the running daemon", cmdStatus},
	{"upload", "ask the running daemon to upload a time range of a stream", cmdUpload},
	{"capture", "turn a stream's capture on or off in the running daemon", cmdCapture},
	{"mux", "convert an Annex-B H.264 file into a KVS-conformant MKV", cmdMux},
	{"export", "write a time range of a stream's ring buffer to an MKV file", cmdExport},
	{"version", "print version, commit and Go version", cmdVersion},
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // bad command line, or a subcommand not available yet
)

func main() {
	tuneRuntime()
	stopProfiles := startProfiles(os.Stderr)
	ctx, stop := signalContext()
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	stopProfiles()
	os.Exit(code)
}

// signalContext returns a context cancelled by the first SIGINT or
// SIGTERM. That first signal asks for a clean stop; default handling is
// restored before the context is cancelled, so that a second signal ends a
// shutdown that hangs. (signal.NotifyContext cannot promise that order.)
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
		case <-ctx.Done():
		}
		signal.Stop(ch)
		cancel()
	}()
	return ctx, cancel
}

// dispatch runs the subcommand named by args[0] and returns the process
// exit status. Errors are printed as "kvscamd <cmd>: <error>".
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			// "kvscamd help run" is "kvscamd run -h".
			return dispatch(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == name {
			return report(stderr, name, c.run(ctx, args[1:], stdout, stderr))
		}
	}
	fmt.Fprintf(stderr, "kvscamd: unknown command %q\n\n", name)
	usage(stderr)
	return exitUsage
}

// report prints err (if any) and maps it to an exit status.
func report(stderr io.Writer, name string, err error) int {
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		err = ee.err
	}
	if err != nil {
		fmt.Fprintf(stderr, "kvscamd %s: %v\n", name, err)
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "kvscamd streams H.264 video from a camera to Amazon Kinesis Video Streams.\n\n")
	fmt.Fprintf(w, "Usage:\n  kvscamd <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"kvscamd <command> -h\" for the flags of a command.\n")
}
