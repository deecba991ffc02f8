package main

import (
	"context"
	"io"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/pipeline"
	"github.com/kvscamd/kvscamd/daemon/sdnotify"
	"github.com/kvscamd/kvscamd/daemon/sender"
)

const runAbout = `
Runs the service: captures every configured stream, cuts it into fragments,
keeps them in the on-disk ring buffer below state_dir and uploads them to
Kinesis Video Streams. Stops cleanly on SIGINT or SIGTERM: the fragment
being captured is closed and stored before the process exits.`

// uploaderFactory builds each stream's uploader: the sender. Set to nil,
// run would capture into the rings only.
var uploaderFactory pipeline.UploaderFactory = sender.PipelineUploader

// cmdRun is the service entry point.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[-config FILE]", runAbout)
	cfgPath := configFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel.Slog())
	p, err := pipeline.New(cfg, pipeline.Options{Logger: log, Uploader: uploaderFactory})
	if err != nil {
		return err
	}
	var names []string
	for _, s := range p.Streams() {
		names = append(names, s.Name+" ("+s.Source.Describe()+")")
	}
	log.Info("kvscamd running", "config", *cfgPath, "state_dir", cfg.StateDir, "streams", names)
	sn := &serviceNotifier{n: sdnotify.FromEnv(), p: p, log: log}
	nctx, stopNotify := context.WithCancel(ctx)
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		sn.run(nctx)
	}()
	err = p.Run(ctx)
	stopNotify()
	<-notified
	log.Info("kvscamd stopped")
	return err
}
