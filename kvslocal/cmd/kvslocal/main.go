// Command kvslocal runs the local Kinesis Video Streams endpoint from
// package kvslocal as a process, for demos and for running real producers
// against it. It prints the endpoint URL and the credentials it accepts as
// shell assignments, then serves until interrupted.
//
//	kvslocal -listen 127.0.0.1:4567 -dir ./kvs-data -stream cam-0001:24h \
//	    -access-key AKIAKVSLOCAL000DEMO0 -secret-key demo-secret
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kvslocal:", err)
		os.Exit(1)
	}
}

type streamList []string

func (s *streamList) String() string     { return strings.Join(*s, ",") }
func (s *streamList) Set(v string) error { *s = append(*s, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kvslocal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4567", "address to listen on (port 0 picks a free one)")
	dir := fs.String("dir", "", "directory for received MKV files and fragments.jsonl (empty: memory only)")
	region := fs.String("region", "", "region requests must be signed for (empty: any)")
	accessKey := fs.String("access-key", "", "long-lived access key id to accept (default: generated)")
	secretKey := fs.String("secret-key", "", "secret for -access-key (default: generated)")
	issue := fs.Duration("issue", 0, "also issue temporary credentials with this lifetime and print them")
	var streams streamList
	fs.Var(&streams, "stream", "create a stream NAME[:RETENTION] at start, e.g. cam-0001:24h (repeatable)")
	autoCreate := fs.Bool("auto-create", false, "create unknown streams on GetDataEndpoint/PutMedia instead of answering 404")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate, written to <dir>/kvslocal-ca.pem")
	idle := fs.Duration("idle-timeout", kvslocal.DefaultIdleTimeout, "close PutMedia after this long without bytes")
	maxConn := fs.Duration("max-connection", kvslocal.DefaultMaxConnectionDuration, "end PutMedia with ERROR 4003 after this long")
	framing := fs.String("ack-framing", "mixed", "ACK layout: mixed, newline, concatenated or split")
	ackOpen := fs.Duration("ack-open-after", 0, "acknowledge the open fragment after this long without bytes (for official producers; the service does not)")
	separate := fs.Bool("separate-data-endpoint", false, "serve PutMedia on a second port, returned by GetDataEndpoint (as the service does)")
	readyFile := fs.String("ready-file", "", "write the URL to this file once listening")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: %w", *logLevel, err)
	}
	fr, ok := map[string]kvslocal.Framing{"mixed": kvslocal.FramingMixed, "newline": kvslocal.FramingNewline,
		"concatenated": kvslocal.FramingConcatenated, "split": kvslocal.FramingSplit}[*framing]
	if !ok {
		return fmt.Errorf("-ack-framing %q: use mixed, newline, concatenated or split", *framing)
	}
	if (*accessKey == "") != (*secretKey == "") {
		return errors.New("-access-key and -secret-key go together")
	}
	if *useTLS && *dir == "" {
		return errors.New("-tls needs -dir to write the CA certificate to")
	}
	srv := kvslocal.New(kvslocal.Options{
		Addr: *listen, Region: *region, Dir: *dir,
		Logger:      slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})),
		AccessKeyID: *accessKey, SecretAccessKey: *secretKey,
		IdleTimeout: *idle, MaxConnectionDuration: *maxConn, AckFraming: fr,
		AckOpenFragmentAfter: *ackOpen, AutoCreateStreams: *autoCreate, TLS: *useTLS,
		SeparateDataEndpoint: *separate,
	})
	for _, s := range streams {
		name, ret, _ := strings.Cut(s, ":")
		var retention time.Duration
		if ret != "" {
			d, err := time.ParseDuration(ret)
			if err != nil {
				return fmt.Errorf("-stream %q: retention: %w", s, err)
			}
			retention = d
		}
		if _, err := srv.CreateStream(name, retention); err != nil {
			return err
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()

	cred := srv.Credentials()
	fmt.Fprintf(stdout, "KVSLOCAL_URL=%s\nKVSLOCAL_DATA_URL=%s\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", srv.URL, srv.DataURL, cred.AccessKeyID, cred.SecretAccessKey)
	if *region != "" {
		fmt.Fprintf(stdout, "AWS_REGION=%s\n", *region)
	}
	if *useTLS {
		ca := filepath.Join(*dir, "kvslocal-ca.pem")
		if err := os.WriteFile(ca, srv.CACertPEM(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "KVSLOCAL_CA=%s\n", ca)
	}
	if *issue > 0 {
		c := srv.IssueCredentials(*issue)
		fmt.Fprintf(stdout, "# temporary credentials, expire %s\nKVSLOCAL_TEMP_ACCESS_KEY_ID=%s\nKVSLOCAL_TEMP_SECRET_ACCESS_KEY=%s\nKVSLOCAL_TEMP_SESSION_TOKEN=%s\n",
			c.Expires.UTC().Format(time.RFC3339), c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(srv.URL+"\n"), 0o644); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
