package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/heartbeat"
	"github.com/kvscamd/kvscamd/daemon/provision"
	"github.com/kvscamd/kvscamd/daemon/sdnotify"
	"github.com/kvscamd/kvscamd/daemon/service"
	"github.com/kvscamd/kvscamd/daemon/status"
)

const runAbout = `
Runs the service: captures every configured stream, cuts it into fragments,
keeps them in the on-disk ring buffer below state_dir and uploads them to
Kinesis Video Streams. Answers kvscamd status, upload and capture on its
unix socket. SIGHUP reloads the configuration file: what can change live
does, and each change is logged with how it was applied. Stops cleanly on
SIGINT or SIGTERM: the fragment being captured is closed and stored before
the process exits.`

// cmdRun is the service entry point.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[-config FILE] [-socket PATH]", runAbout)
	cfgPath := configFlag(fs)
	socket := socketFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return runDaemon(ctx, *cfgPath, stderr, service.Options{Socket: *socket})
}

// runDaemon loads the configuration at path and runs the service with o
// (ConfigPath, Logger, LogLevel and Version are filled in here) until ctx
// ends. Tests call it to add options the file has no keys for.
func runDaemon(ctx context.Context, path string, stderr io.Writer, o service.Options) error {
	// Listen for SIGHUP before anything else: its default action would
	// end the process and lose the open fragment.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel.Slog())
	log := newLogger(stderr, level)
	if cfg, err = provisionFirst(ctx, path, cfg, log); cfg == nil {
		return err // nil: stopped while provisioning
	}
	o.ConfigPath, o.Logger, o.LogLevel, o.Version = path, log, level, version
	hb := o.Stream.Heartbeat
	if hb == nil {
		hb = heartbeat.New()
		o.Stream.Heartbeat = hb
	}
	stopHook := stallHook(hb, log)
	defer stopHook()
	svc, err := service.New(cfg, o)
	if err != nil {
		return err
	}
	log.Info("kvscamd running", "config", path, "state_dir", cfg.StateDir, "streams", svc.Streams(), "socket", o.Socket)

	sn := &serviceNotifier{n: sdnotify.FromEnv(), svc: svc, hb: hb, log: log}
	nctx, stopNotify := context.WithCancel(ctx)
	defer stopNotify()
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		sn.run(nctx)
	}()
	go func() {
		for {
			select {
			case <-nctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration", "op", "reload", "config", path)
				// Errors are logged by the service with every problem.
				_, _ = svc.Do(nctx, status.Command{Op: status.OpReload})
			}
		}
	}()
	if cfg.Provisioning.Enabled() && cfg.Identity != nil {
		go func() {
			_ = provision.RunRenewal(nctx, provision.Options{Config: cfg.Provisioning, Logger: log})
		}()
	}
	err = svc.Run(ctx)
	stopNotify()
	<-notified
	log.Info("kvscamd stopped")
	return err
}

// socketFlag adds -socket, the status socket's path.
func socketFlag(fs *flag.FlagSet) *string {
	def := status.DefaultSocket
	if v := os.Getenv("KVSCAMD_SOCKET"); v != "" {
		def = v
	}
	return fs.String("socket", def, "path of the daemon's status socket (env KVSCAMD_SOCKET)")
}

// stallHook installs the stall TEST HOOK when $KVSCAMD_TEST_STALL names a
// stage: SIGUSR2 then hangs that stage's loop for good (see
// heartbeat.ArmStall), as a write hung on a dying SD card would. Without
// the variable it does nothing. The returned func uninstalls it.
func stallHook(hb *heartbeat.Monitor, log *slog.Logger) func() {
	name := os.Getenv(heartbeat.StallEnv)
	if name == "" {
		return func() {}
	}
	log.Warn("test hook armed: SIGUSR2 stalls a stage", "env", heartbeat.StallEnv, "stage", name)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-sig:
				log.Warn("test hook: stalling a stage", "stage", name)
				hb.ArmStall(name)
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
