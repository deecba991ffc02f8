// Command kvslocal runs the local Kinesis Video Streams endpoint from
// package kvslocal as a process, for demos and for running real producers
// against it. It prints the endpoint URL and the credentials it accepts as
// shell assignments, then serves until interrupted.
//
//	kvslocal -listen 127.0.0.1:4567 -dir ./kvs-data -stream cam-0001:24h \
//	    -access-key AKIAKVSLOCAL000DEMO0 -secret-key demo-secret
//
// The service's limits are on by default and each has a flag
// (-min-fragment, -max-fragment, -fragments-per-second, -persist-delay,
// ...). -control ADDR serves kvslocal.Server.FaultHandler there: faults
// armed over HTTP (POST /fail, /poison, /drop, /stall, /release,
// /throttle, /slow, /down, /up, /expire, /clock) and what was received
// (GET /fragments, /live, /acks). Keep it on a loopback or test-only
// address: it has no authentication.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
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
	control := fs.String("control", "", "serve the fault and record endpoint on this address (no authentication: test use only)")
	minFrag := fs.Duration("min-fragment", kvslocal.DefaultMinFragmentDuration, "refuse shorter fragments (MIN_FRAGMENT_DURATION_REACHED); negative disables")
	maxFrag := fs.Duration("max-fragment", kvslocal.DefaultMaxFragmentDuration, "refuse longer fragments with ERROR 4002")
	fragRate := fs.Float64("fragments-per-second", kvslocal.DefaultMaxFragmentsPerSecond, "refuse fragments over this rate with ERROR 4000; negative disables")
	byteRate := fs.Float64("bytes-per-second", kvslocal.DefaultMaxBytesPerSecond, "read PutMedia bodies no faster than this; negative disables")
	persistDelay := fs.Duration("persist-delay", kvslocal.DefaultPersistDelay, "wait between RECEIVED and PERSISTED; negative: none")
	clockSkew := fs.Duration("max-clock-skew", kvslocal.DefaultMaxClockSkew, "refuse signatures further off the server clock")
	future := fs.Duration("max-future", kvslocal.DefaultMaxFutureTimestamp, "ERROR 4007 for fragments stamped further ahead; negative disables")
	clockOffset := fs.Duration("clock-offset", 0, "run the server clock this far from the host clock (e.g. 10m to look like a producer whose clock is behind)")
	replace := fs.Bool("replace-open-connection", false, "a second PutMedia ends the open one (the 2020 documented behaviour) instead of being refused (the current one)")
	faultSpec := fs.String("fail", "", "arm ERROR acks at start: STREAM:CODE[:SKIP], comma-separated")
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
		MinFragmentDuration:  *minFrag, MaxFragmentDuration: *maxFrag,
		MaxFragmentsPerSecond: *fragRate, MaxBytesPerSecond: *byteRate,
		PersistDelay: *persistDelay, MaxClockSkew: *clockSkew, MaxFutureTimestamp: *future,
		ReplaceOpenConnection: *replace,
	})
	srv.SetClockOffset(*clockOffset)
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
	if err := armFaults(srv, *faultSpec); err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	if *control != "" {
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			return fmt.Errorf("-control %s: %w", *control, err)
		}
		hs := &http.Server{Handler: srv.FaultHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		fmt.Fprintf(stdout, "KVSLOCAL_CONTROL=http://%s\n", ln.Addr())
	}

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

// armFaults arms -fail: STREAM:CODE[:SKIP],... on streams created by
// -stream.
func armFaults(srv *kvslocal.Server, spec string) error {
	if spec == "" {
		return nil
	}
	for _, item := range strings.Split(spec, ",") {
		parts := strings.Split(item, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return fmt.Errorf("-fail %q: want STREAM:CODE[:SKIP], e.g. cam-0001:5000:3", item)
		}
		code, err := strconv.Atoi(parts[1])
		if err != nil {
			return fmt.Errorf("-fail %q: code: %w", item, err)
		}
		skip := 0
		if len(parts) == 3 {
			if skip, err = strconv.Atoi(parts[2]); err != nil {
				return fmt.Errorf("-fail %q: skip: %w", item, err)
			}
		}
		if err := srv.FailFragment(parts[0], code, skip); err != nil {
			return fmt.Errorf("-fail %q: %w", item, err)
		}
	}
	return nil
}
