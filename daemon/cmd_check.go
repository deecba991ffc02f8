package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender"
	"github.com/kvscamd/kvscamd/daemon/stream"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/drivers/file"
	"github.com/kvscamd/kvscamd/drivers/v4l2"
)

const checkAbout = `
Checks the configuration, the files and directories it names (state_dir
and the ring directories must be writable), the credentials, the KVS and
MQTT endpoints, the clock and the capture devices. Prints one line per
check, "NAME: ok ...", "NAME: WARN what will happen and fix" or "NAME: FAIL
reason and fix", for the checks config, clock, credentials, kvs, mqtt, ring
and device (kvs, ring and device once per stream). A WARN is something the
daemon copes with (an unsynchronised clock: video waits on disk; a ring
larger than the disk: only the newest is kept). Exits 0 unless a check
fails. Secrets are never printed.`

// checkTimeout bounds each network check, so that check answers on a
// device whose network is down.
const checkTimeout = 20 * time.Second

// cmdCheck validates a configuration and the environment it needs.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "[-config FILE]", checkAbout)
	path := configFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	failed := 0
	line := func(s string, err error) {
		if err != nil {
			failed++
		}
		fmt.Fprintln(stdout, s)
	}

	cfg, err := config.Load(*path)
	if err != nil {
		// Every problem on its own line, so that one edit fixes them all.
		msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "config: "), "\n", "\n  ")
		line(fmt.Sprintf("config: FAIL %s", msg), err)
		return &exitError{code: exitFailure}
	}
	// The same checks run makes before it starts. The file itself is
	// valid, so the checks below still say something useful.
	if problems := cfg.CheckHost(); problems != nil {
		msg := strings.ReplaceAll(problems.Error(), "\n", "\n  ")
		line(fmt.Sprintf("config: FAIL %s: %s", *path, msg), problems)
	} else {
		line(fmt.Sprintf("config: ok %s (%d stream%s)", *path, len(cfg.Streams), plural(len(cfg.Streams))), nil)
	}

	line(checkClock(cfg))

	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if cfg.Provisioning.Enabled() {
		line(checkProvisioning(cctx, cfg))
	}
	if cfg.ProvisioningPending() {
		// Without its identity the device has no credentials or streams
		// to check yet; the sources can be.
		for i := range cfg.Streams {
			line(checkDevice(cfg, &cfg.Streams[i]))
		}
		if failed > 0 {
			return &exitError{code: exitFailure}
		}
		return nil
	}
	// The lines say what matters; the providers' own logs would repeat it.
	quiet := credentials.WithLogger(slog.New(slog.DiscardHandler))
	credLine, credErr := credentials.Check(cctx, cfg.CredentialsConfig(), quiet)
	line(credLine, credErr)

	var prov *credentials.Manager
	if credErr == nil {
		prov, err = credentials.New(cctx, cfg.CredentialsConfig(), quiet)
		if err != nil {
			credErr = err
		}
	}
	for i := range cfg.Streams {
		st := &cfg.Streams[i]
		if credErr != nil {
			line(fmt.Sprintf("kvs: FAIL stream %s: not checked, the credentials check failed; fix it first", st.Name), credErr)
		} else {
			sc := stream.SenderConfig(cfg, *st)
			sc.Credentials = prov
			line(sender.Check(cctx, sc))
		}
		line(checkDevice(cfg, st))
		fmt.Fprintln(stdout, checkRingSpace(cfg, st))
	}
	line(checkMQTT(cctx, cfg))

	if failed > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func checkClock(cfg *config.Config) (string, error) {
	mode, err := clock.ParseSyncMode(string(cfg.ClockSync))
	if err != nil {
		return "clock: FAIL " + err.Error(), err
	}
	st := clock.System{Mode: mode}.Status()
	if p := os.Getenv(clock.TestSyncFileEnv); p != "" {
		// The test hook the sources obey, so that check says what they see.
		st.Synced, st.Source, st.Detail = clock.FileSync{Path: p}.Synced(), "test hook", p+" does not exist"
	}
	now := time.Now().UTC().Format(time.RFC3339)
	if st.Synced {
		return fmt.Sprintf("clock: ok %s, synchronised (%s)", now, st.Source), nil
	}
	// Not a failure: capture stores video on the monotonic clock and the
	// sender uploads it once the clock is synchronised. But until then
	// nothing leaves the device, which the operator must know.
	return fmt.Sprintf("clock: WARN %s, the kernel reports the clock unsynchronised (%s); video is stored and "+
		"uploaded only once it is: enable NTP (timedatectl set-ntp true), or set clock_sync = \"trust\" if this clock "+
		"is known to be right", now, st.Detail), nil
}

// checkDevice checks that a stream's source can start: the device node
// opens, the file is H.264, the command exists.
func checkDevice(cfg *config.Config, st *config.Stream) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		err := fmt.Errorf(format, args...)
		return fmt.Sprintf("device: FAIL stream %s: %v", st.Name, err), err
	}
	switch st.Driver {
	case config.DriverV4L2:
		fi, err := os.Stat(st.Device)
		if err != nil {
			return fail("%v; plug in the camera or set device = the camera's /dev/videoN", err)
		}
		if fi.Mode()&os.ModeCharDevice == 0 {
			return fail("%s is not a character device; set device = the camera's /dev/videoN", st.Device)
		}
		info, err := v4l2.Probe(st.Device)
		switch {
		case errors.Is(err, os.ErrPermission):
			return fail("%v; add the service user to the video group (usermod -aG video kvscamd)", err)
		case err != nil:
			return fail("%v", err)
		case !info.Capture:
			return fail("%s (%s, driver %s) is not a streaming capture device; pick the camera's capture node (v4l2-ctl --list-devices)", st.Device, info.Card, info.Driver)
		case !info.H264 && len(info.Formats) > 0:
			return fail("%s (%s) offers no H.264, only %s; use a camera with an H.264 encoder, or driver = \"exec\" with an encoder command", st.Device, info.Card, strings.Join(info.Formats, " "))
		case !info.H264:
			return fmt.Sprintf("device: ok stream %s: %s (%s, driver %s) lists no formats yet; capture waits for it", st.Name, st.Device, info.Card, info.Driver), nil
		}
		return fmt.Sprintf("device: ok stream %s: %s (%s, driver %s) offers H.264", st.Name, st.Device, info.Card, info.Driver), nil
	case config.DriverFile:
		if _, err := file.New(file.Config{Path: st.Path, FPS: st.FPS}); err != nil {
			return fail("%v", err)
		}
		return fmt.Sprintf("device: ok stream %s: %s is Annex-B H.264", st.Name, st.Path), nil
	case config.DriverExec:
		if len(st.Command) == 0 {
			return fail("command is empty; set command = [\"rpicam-vid\", \"-t\", \"0\", \"-o\", \"-\"]")
		}
		p, err := osexec.LookPath(st.Command[0])
		if err != nil {
			return fail("%v; install it or give its full path in command", err)
		}
		return fmt.Sprintf("device: ok stream %s: %s found at %s", st.Name, st.Command[0], p), nil
	}
	return fail("unknown driver %q", st.Driver)
}

// checkMQTT connects to the broker as the thing, subscribes to every
// topic filter the daemon uses and reports which of TLS, authentication
// or the policy failed. It publishes nothing.
func checkMQTT(ctx context.Context, cfg *config.Config) (string, error) {
	if !cfg.MQTT.Enabled {
		return "mqtt: ok disabled (mqtt.enabled = false)", nil
	}
	return mqtt.Check(ctx, cfg.MQTT, cfg.ThingName)
}

// checkRingSpace compares ring_size with what the filesystem can give the
// ring. Too little is a warning, not a failure: the ring still works, it
// just keeps less history (see package ring).
func checkRingSpace(cfg *config.Config, st *config.Stream) string {
	dir := cfg.RingDir(st.Name)
	sp, err := ring.SpaceOf(dir)
	if err != nil {
		return fmt.Sprintf("ring: WARN stream %s: %v", st.Name, err)
	}
	size := int64(st.RingSize)
	if size > sp.Room() {
		return fmt.Sprintf("ring: WARN stream %s: ring_size %s exceeds what the filesystem of %s can give the ring by %s "+
			"(%s free beyond a reserve, plus %s the ring holds); it will keep only the newest %s; lower ring_size or use a larger filesystem",
			st.Name, humanBytes(size), dir, humanBytes(size-sp.Room()), humanBytes(sp.Free), humanBytes(sp.Held), humanBytes(sp.Room()))
	}
	return fmt.Sprintf("ring: ok stream %s: ring_size %s fits (%s free, %s held)", st.Name, humanBytes(size), humanBytes(sp.Free), humanBytes(sp.Held))
}
