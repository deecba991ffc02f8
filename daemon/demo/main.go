// Command demo runs the whole kvscamd pipeline on one machine with no AWS
// account: it starts the local Kinesis Video Streams endpoint (package
// kvslocal) in-process, writes a configuration that replays a test clip as
// a live camera and uploads to that endpoint, runs `kvscamd run` for a
// while, stops it with SIGTERM and reports what the endpoint received. The
// received video is left under the output directory, one MKV file per
// PutMedia connection, ready to play.
//
//	go run ./daemon/demo -kvscamd bin/kvscamd -seconds 20 -out demo-out
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

func main() {
	if _, err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// result is what the demo saw, for its test.
type result struct {
	dir       string // where the stream's files are
	fragments int
	frames    int
	files     map[string]int // MKV file -> frames in it
}

func run(args []string, stdout io.Writer) (result, error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bin := fs.String("kvscamd", "bin/kvscamd", "the kvscamd binary to run")
	clip := fs.String("clip", "testdata/baseline-repeat.h264", "Annex-B H.264 clip replayed as the camera")
	fps := fs.Int("fps", 30, "frame rate of the clip")
	seconds := fs.Int("seconds", envInt("DEMO_SECONDS", 20), "how long kvscamd runs (env DEMO_SECONDS)")
	out := fs.String("out", "demo-out", "directory for what the endpoint receives (emptied first)")
	stream := fs.String("stream", "demo-cam", "stream and thing name")
	verbose := fs.Bool("v", false, "show the endpoint's log")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}

	for _, p := range []string{*bin, *clip} {
		if _, err := os.Stat(p); err != nil {
			return result{}, fmt.Errorf("%w (run from the repository root after `make build`)", err)
		}
	}
	clipAbs, err := filepath.Abs(*clip)
	if err != nil {
		return result{}, err
	}
	outAbs, err := filepath.Abs(*out)
	if err != nil {
		return result{}, err
	}
	if err := os.RemoveAll(outAbs); err != nil {
		return result{}, fmt.Errorf("clear %s: %w", outAbs, err)
	}

	logLevel := slog.LevelWarn
	if *verbose {
		logLevel = slog.LevelInfo
	}
	kvs := kvslocal.New(kvslocal.Options{
		Dir:    outAbs,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})),
	})
	if err := kvs.Start(); err != nil {
		return result{}, err
	}
	defer kvs.Close()

	work, err := os.MkdirTemp("", "kvscamd-demo-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(work)
	creds := kvs.Credentials()
	conf := filepath.Join(work, "kvscamd.toml")
	text := fmt.Sprintf(`# written by the kvscamd demo
thing_name = %q
region     = "us-west-2"
state_dir  = %q
log_level  = "info"
clock_sync = "trust"

[credentials]
source            = "static"
access_key_id     = %q
secret_access_key = %q

[kvs]
endpoint      = %q
create_stream = true
retention     = "24h"

[[stream]]
name      = %q
driver    = "file"
path      = %q
loop      = true
realtime  = true
fps       = %d
ring_size = "64MiB"
`, *stream, filepath.Join(work, "state"), creds.AccessKeyID, creds.SecretAccessKey, kvs.URL, *stream, clipAbs, *fps)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return result{}, err
	}

	fmt.Fprintf(stdout, "demo: local KVS endpoint at %s; running %s for %d s (config %s)\n", kvs.URL, *bin, *seconds, conf)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := exec.Command(*bin, "run", "-config", conf)
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start kvscamd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(time.Duration(*seconds) * time.Second)
	var runErr error
	select {
	case runErr = <-exited:
		runErr = fmt.Errorf("kvscamd exited early: %v", runErr)
	case <-timer.C:
	case <-ctx.Done():
	}
	if runErr == nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				runErr = fmt.Errorf("kvscamd did not stop cleanly: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			runErr = errors.New("kvscamd did not stop within 30 s of SIGTERM")
		}
	}
	// Let the endpoint finish the connection kvscamd just closed.
	kvs.Close()
	return summary(stdout, outAbs, *stream, kvs), runErr
}

func summary(stdout io.Writer, out, stream string, kvs *kvslocal.Server) result {
	frags := kvs.Fragments(stream)
	acks := kvs.Acks(stream)
	counts := map[string]int{}
	for _, a := range acks {
		counts[a.EventType]++
	}
	frames, bytes, persisted := 0, 0, 0
	files := map[string]int{}
	for _, f := range frags {
		frames += f.Frames
		bytes += f.Bytes
		if f.Persisted {
			persisted++
		}
		if f.File != "" {
			files[f.File] += f.Frames
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		rel, err := filepath.Rel(mustGetwd(), n)
		if err != nil {
			rel = n
		}
		names = append(names, rel)
	}
	sort.Strings(names)
	var ackText []string
	for _, k := range []string{"BUFFERING", "RECEIVED", "PERSISTED", "ERROR", "IDLE"} {
		ackText = append(ackText, fmt.Sprintf("%d %s", counts[k], k))
	}
	play := "nothing to play"
	if len(names) > 0 {
		play = "play it with: ffplay " + names[0]
		if len(names) > 1 {
			play += fmt.Sprintf(" (one file per PutMedia connection; %d in all)", len(names))
		}
	}
	fmt.Fprintf(stdout, "\ndemo: the local endpoint received %d fragments (%d frames, %d bytes) on %d PutMedia connection(s) "+
		"of stream %q and sent %s; %d fragments were PERSISTED. Received video and fragments.jsonl are in %s; %s.\n",
		len(frags), frames, bytes, kvs.Connections(stream), stream, strings.Join(ackText, ", "), persisted,
		filepath.Join(out, stream), play)
	return result{dir: filepath.Join(out, stream), fragments: len(frags), frames: frames, files: files}
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}

func envInt(name string, def int) int {
	var n int
	if v := os.Getenv(name); v != "" {
		if _, err := fmt.Sscan(v, &n); err == nil && n > 0 {
			return n
		}
	}
	return def
}
