// Command benchdaemon measures the whole kvscamd binary, the way it runs
// on a camera: a 1080p30 4 Mbit/s clip replayed by the file driver,
// uploaded over https to the local Kinesis Video Streams endpoint
// (package kvslocal) with credentials from a local AWS IoT credentials
// endpoint (package iotlocal), both run inside this program.
//
// Two modes:
//
//	bench  runs the clip in real time for -minutes and prints one table
//	       (also written as JSON): CPU per minute of video, RSS, goroutines,
//	       open files, context switches, write amplification, upload
//	       latency, READY time, binary size; optionally checks that nothing
//	       is written while capture is off.
//	soak   replays as fast as the pipeline takes it, injecting a fault
//	       every -fault-every, samples RSS, goroutines, open files and ring
//	       fill into JSON and an SVG plot, and fails when any of the first
//	       three grows.
//
// Several -variant flags run several daemons side by side in one run, each
// with its own environment (e.g. GOGC), so that they share the machine's
// load and their numbers can be compared as ratios. The Makefile's
// bench-daemon, soak and test-soak-short targets call this program.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdaemon:", err)
		os.Exit(1)
	}
}

// variantFlag collects -variant NAME[:K=V,K=V]. The key @bin names
// another kvscamd binary for that variant (e.g. one built from an earlier
// commit), so that two builds run side by side under the same load.
type variantFlag []variantSpec

type variantSpec struct {
	Name string
	Env  []string
	Bin  string // "" for -kvscamd
}

// binary is the kvscamd binary the variant runs: its @bin, or def.
func (v variantSpec) binary(def string) string {
	if v.Bin != "" {
		return v.Bin
	}
	return def
}

func (v *variantFlag) String() string { return fmt.Sprint(*v) }

func (v *variantFlag) Set(s string) error {
	name, env, _ := strings.Cut(s, ":")
	if name == "" || strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("variant %q: want NAME or NAME:KEY=VALUE,KEY=VALUE with a NAME without / or spaces", s)
	}
	vs := variantSpec{Name: name}
	if env != "" {
		for _, kv := range strings.Split(env, ",") {
			if !strings.Contains(kv, "=") {
				return fmt.Errorf("variant %q: %q is not KEY=VALUE", s, kv)
			}
			if bin, ok := strings.CutPrefix(kv, "@bin="); ok {
				vs.Bin = bin
				continue
			}
			vs.Env = append(vs.Env, kv)
		}
	}
	*v = append(*v, vs)
	return nil
}

type options struct {
	mode       string
	bin        string
	out        string
	cache      string
	minutes    float64
	streams    int
	ringMiB    int64
	loopdev    bool
	noatime    bool
	warmup     time.Duration
	captureOff time.Duration
	cpuprofile bool
	variants   variantFlag
	// soak
	videoHours float64
	faultEvery time.Duration
	credLife   time.Duration
	sampleDt   time.Duration
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("benchdaemon", flag.ContinueOnError)
	fs.StringVar(&o.mode, "mode", "bench", "bench (real time, one table) or soak (as fast as possible, with faults, fails on growth)")
	fs.StringVar(&o.bin, "kvscamd", "bin/kvscamd", "the kvscamd binary (make build)")
	fs.StringVar(&o.out, "out", "build/bench", "directory for the JSON report, the SVG plot, logs and profiles")
	fs.StringVar(&o.cache, "cache", "build/bench-cache", "directory for the encoded clip, kept between runs")
	fs.Float64Var(&o.minutes, "minutes", 2, "wall-clock minutes to run (soak: at most)")
	fs.IntVar(&o.streams, "streams", 1, "streams per daemon, each replaying the clip")
	fs.Int64Var(&o.ringMiB, "ring-mib", 1024, "ring_size of each stream in MiB")
	fs.BoolVar(&o.loopdev, "loopdev", false, "put each daemon's state dir on its own ext4 loop device and report sectors written (root)")
	fs.BoolVar(&o.noatime, "noatime", false, "mount the loop devices with noatime (default: relatime, which writes an access time after a file changed and is read)")
	fs.DurationVar(&o.warmup, "warmup", 15*time.Second, "bench: time after READY left out of rates and steady values")
	fs.DurationVar(&o.captureOff, "capture-off", 0, "bench: after the run, turn capture off, wait for the uploads, then count bytes written for this long (0: skip)")
	fs.BoolVar(&o.cpuprofile, "cpuprofile", false, "bench: write each daemon's CPU and allocation profiles to -out (a binary built with make build TAGS=profiling)")
	fs.Var(&o.variants, "variant", "NAME[:KEY=VALUE,...]: run a daemon with this extra environment (@bin=PATH: another binary); repeat to compare side by side (default: one daemon \"default\")")
	fs.Float64Var(&o.videoHours, "video-hours", 24, "soak: stop after this much video per stream has been captured")
	fs.DurationVar(&o.faultEvery, "fault-every", 20*time.Second, "soak: interval between injected faults")
	fs.DurationVar(&o.credLife, "cred-lifetime", 0, "lifetime of IoT credentials (0: 1 h for bench, 2 min for soak)")
	fs.DurationVar(&o.sampleDt, "sample", 0, "sampling interval (0: 1 s for bench, 500 ms for soak)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(o.variants) == 0 {
		o.variants = variantFlag{{Name: "default"}}
	}
	if o.streams < 1 {
		return fmt.Errorf("-streams %d: want at least 1", o.streams)
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (build it with make build)", err)
	}
	o.bin = bin
	if o.out, err = filepath.Abs(o.out); err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	clip, err := ensureClip(ctx, o.cache)
	if err != nil {
		return err
	}
	switch o.mode {
	case "bench":
		if o.sampleDt == 0 {
			o.sampleDt = time.Second
		}
		if o.credLife == 0 {
			o.credLife = time.Hour
		}
		return runBench(ctx, o, clip)
	case "soak":
		if o.sampleDt == 0 {
			o.sampleDt = 500 * time.Millisecond
		}
		if o.credLife == 0 {
			o.credLife = 2 * time.Minute
		}
		return runSoak(ctx, o, clip)
	}
	return fmt.Errorf("-mode %q: want bench or soak", o.mode)
}

// writeJSON writes v to path, indented.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// statusTries bounds the status calls of one sample.
const statusTries = 3

// sample is one reading of one daemon.
type sample struct {
	T    float64 `json:"t"` // seconds since READY
	At   time.Time
	Proc procSample
	St   daemonStatus
}

// sampler reads a daemon every interval until ctx ends or it dies.
func sampleOnce(ctx context.Context, d *daemon) (sample, error) {
	if err := d.alive(); err != nil {
		return sample{}, err
	}
	p, err := readProc(d.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	// On a loaded machine one status call can time out while the daemon
	// is fine: only a daemon that stays silent fails the run.
	var st daemonStatus
	for try := 1; ; try++ {
		if st, err = d.status(ctx); err == nil {
			break
		}
		if aerr := d.alive(); aerr != nil {
			return sample{}, aerr
		}
		if try == statusTries {
			return sample{}, fmt.Errorf("daemon %s status: %w", d.spec.Name, err)
		}
		fmt.Fprintf(os.Stderr, "benchdaemon: %s: status try %d: %v\n", d.spec.Name, try, err)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return sample{}, err
		}
	}
	now := time.Now()
	return sample{T: now.Sub(d.started.Add(d.ready)).Seconds(), At: now, Proc: p, St: st}, nil
}

// sleepCtx waits d or until ctx ends; it is the sampling cadence, not a
// synchronisation.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
