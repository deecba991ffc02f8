package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// benchResult is one daemon's numbers; JSON field names carry the unit.
type benchResult struct {
	Variant string   `json:"variant"`
	Env     []string `json:"env,omitempty"`
	Streams int      `json:"streams"`

	WallSeconds  float64 `json:"wall_seconds"`
	VideoMinutes float64 `json:"video_minutes"` // summed over streams
	VideoBytes   int64   `json:"video_bytes"`

	// CPU-s per minute of video of one stream (summed over streams), over
	// the steady window and over the whole run from exec.
	CPUPerVideoMin      float64 `json:"cpu_s_per_video_min"`
	CPUPerVideoMinTotal float64 `json:"cpu_s_per_video_min_incl_startup"`

	PeakRSS   int64 `json:"peak_rss_bytes"`   // VmHWM
	SteadyRSS int64 `json:"steady_rss_bytes"` // median VmRSS over the steady window
	MaxRSS    int64 `json:"max_sampled_rss_bytes"`
	// The anonymous part of RSS (heap, stacks): what the daemon costs
	// beyond its binary's pages.
	SteadyAnon int64 `json:"steady_rss_anon_bytes"`
	MaxAnon    int64 `json:"max_sampled_rss_anon_bytes"`
	SteadyFile int64 `json:"steady_rss_file_bytes"`

	GoroutinesMedian int `json:"goroutines_median"`
	GoroutinesMax    int `json:"goroutines_max"`
	Threads          int `json:"threads_max"`
	FDsMedian        int `json:"open_files_median"`
	FDsMax           int `json:"open_files_max"`

	VoluntaryPerSec   float64 `json:"voluntary_ctx_switches_per_s"`
	InvoluntaryPerSec float64 `json:"involuntary_ctx_switches_per_s"`

	// Written per video byte: by the process (/proc/<pid>/io write_bytes)
	// and at the block device (loop device sectors, -loopdev only).
	WritePerVideoByte  float64  `json:"process_write_bytes_per_video_byte"`
	DevicePerVideoByte *float64 `json:"device_bytes_per_video_byte,omitempty"`
	UploadPerVideoByte float64  `json:"upload_bytes_per_video_byte"`

	// Fragment ready (its last frame's slot ended) to RECEIVED at the
	// endpoint, in ms.
	LatencyP50 float64 `json:"ready_to_received_p50_ms"`
	LatencyP99 float64 `json:"ready_to_received_p99_ms"`
	LatencyMax float64 `json:"ready_to_received_max_ms"`
	LatencyN   int     `json:"ready_to_received_samples"`

	ReadyMs    float64 `json:"ready_after_start_ms"`
	BinarySize int64   `json:"binary_bytes"`

	FragmentsStored uint64 `json:"fragments_stored"`
	FragmentsAcked  uint64 `json:"fragments_acked"`
	FragmentsLost   uint64 `json:"fragments_lost"`
	Connections     uint64 `json:"putmedia_connections"`

	// From getrusage of the exited process: its whole life.
	RusageMaxRSS      int64 `json:"rusage_maxrss_bytes,omitempty"`
	RusageVoluntary   int64 `json:"rusage_voluntary_ctx_switches,omitempty"`
	RusageInvoluntary int64 `json:"rusage_involuntary_ctx_switches,omitempty"`

	CaptureOff *captureOffResult `json:"capture_off,omitempty"`
	Log        string            `json:"log"`
}

// captureOffResult is what the daemon wrote while every stream's capture
// was off and nothing was left to upload: it should be nothing.
type captureOffResult struct {
	Seconds       float64  `json:"seconds"`
	WriteBytes    int64    `json:"process_write_bytes"`
	DeviceBytes   *int64   `json:"device_bytes,omitempty"`
	StateChanged  bool     `json:"state_files_changed"`
	ChangedFiles  []string `json:"changed_files,omitempty"` // path: size mtime before -> after
	SettleSeconds float64  `json:"settle_seconds"`          // capture off until all acknowledged
}

type benchReport struct {
	Mode      string        `json:"mode"`
	Started   time.Time     `json:"started"`
	Minutes   float64       `json:"minutes"`
	Streams   int           `json:"streams"`
	RingMiB   int64         `json:"ring_mib"`
	Clip      string        `json:"clip"`
	ClipBPS   float64       `json:"clip_bitrate_bps"`
	Transport string        `json:"transport"`
	Host      string        `json:"host"`
	Load      string        `json:"loadavg_at_start"`
	Results   []benchResult `json:"results"`
}

func runBench(ctx context.Context, o options, clip *clipInfo) error {
	work, err := os.MkdirTemp("", "kvscamd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r, err := newRig(work, rigOptions{CredLifetime: o.credLife})
	if err != nil {
		return err
	}
	defer r.Close()
	binSizes := make([]int64, len(o.variants))
	for i, v := range o.variants {
		fi, err := os.Stat(v.binary(o.bin))
		if err != nil {
			return err
		}
		binSizes[i] = fi.Size()
	}
	load, _ := os.ReadFile("/proc/loadavg")
	rep := benchReport{Mode: "bench", Started: time.Now().UTC(), Minutes: o.minutes, Streams: o.streams, RingMiB: o.ringMiB,
		Clip: filepath.Base(clip.Path), ClipBPS: clip.bitrate(), Transport: "https, IoT credentials",
		Host: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()), Load: strings.TrimSpace(string(load))}

	var ds []*daemon
	defer func() {
		for _, d := range ds {
			d.kill()
			d.cleanup()
		}
	}()
	for _, v := range o.variants {
		spec := daemonSpec{Name: v.Name, Env: v.Env, Streams: o.streams, RingSize: o.ringMiB << 20, Realtime: true, LoopDev: o.loopdev, NoAtime: o.noatime}
		if o.cpuprofile {
			spec.CPUProf = filepath.Join(o.out, v.Name+".cpu.pprof")
			spec.MemProf = filepath.Join(o.out, v.Name+".allocs.pprof")
		}
		d, err := r.startDaemon(ctx, v.binary(o.bin), clip.Path, o.out, spec)
		if err != nil {
			return err
		}
		ds = append(ds, d)
		fmt.Fprintf(os.Stderr, "bench: %s READY after %v (pid %d, log %s)\n", v.Name, d.ready.Round(time.Millisecond), d.cmd.Process.Pid, d.logPath)
	}
	samples := make([][]sample, len(ds))
	end := time.Now().Add(time.Duration(o.minutes * float64(time.Minute)))
	for time.Now().Before(end) {
		for i, d := range ds {
			s, err := sampleOnce(ctx, d)
			if err != nil {
				return err
			}
			samples[i] = append(samples[i], s)
		}
		if err := sleepCtx(ctx, o.sampleDt); err != nil {
			return err
		}
	}
	res := make([]benchResult, len(ds))
	for i, d := range ds {
		s, err := sampleOnce(ctx, d)
		if err != nil {
			return err
		}
		samples[i] = append(samples[i], s)
		res[i] = summarize(o, clip, d, samples[i], r)
		res[i].BinarySize = binSizes[i]
		if d.loop != nil {
			sec, err := d.loop.Sectors()
			if err != nil {
				return err
			}
			v := float64((sec-d.sectors0)*512) / float64(res[i].VideoBytes)
			res[i].DevicePerVideoByte = &v
		}
	}
	if o.captureOff > 0 {
		for i, d := range ds {
			co, err := captureOff(ctx, d, o.captureOff)
			if err != nil {
				return err
			}
			res[i].CaptureOff = co
		}
	}
	var errs []error
	for i, d := range ds {
		ru, err := d.stop()
		errs = append(errs, err)
		if ru != nil {
			res[i].RusageMaxRSS = int64(ru.Maxrss) << 10
			res[i].RusageVoluntary = int64(ru.Nvcsw)
			res[i].RusageInvoluntary = int64(ru.Nivcsw)
		}
	}
	rep.Results = res
	path := filepath.Join(o.out, "bench-daemon.json")
	if err := writeJSON(path, rep); err != nil {
		return err
	}
	printTable(os.Stdout, rep)
	fmt.Fprintf(os.Stdout, "\nJSON: %s\n", path)
	return errors.Join(errs...)
}

// summarize turns one daemon's samples into its numbers.
func summarize(o options, clip *clipInfo, d *daemon, ss []sample, r *rig) benchResult {
	last := ss[len(ss)-1]
	res := benchResult{Variant: d.spec.Name, Env: d.spec.Env, Streams: d.spec.Streams, Log: d.logPath}
	res.WallSeconds = last.T + d.ready.Seconds()
	res.VideoMinutes = float64(last.St.Frames) / clipFPS / 60
	res.VideoBytes = clip.videoBytes(last.St.Frames/uint64(d.spec.Streams)) * int64(d.spec.Streams)
	// The first sample at or after the warm-up starts the steady window.
	w := 0
	for w < len(ss)-1 && ss[w].T < o.warmup.Seconds() {
		w++
	}
	first := ss[w]
	if dv := float64(last.St.Frames-first.St.Frames) / clipFPS / 60; dv > 0 {
		res.CPUPerVideoMin = (last.Proc.CPUSeconds - first.Proc.CPUSeconds) / dv
	}
	if res.VideoMinutes > 0 {
		res.CPUPerVideoMinTotal = last.Proc.CPUSeconds / res.VideoMinutes
	}
	res.PeakRSS = last.Proc.HWM
	var rss, anon, file, gor, fds []float64
	for _, s := range ss[w:] {
		rss = append(rss, float64(s.Proc.RSS))
		anon = append(anon, float64(s.Proc.RSSAnon))
		file = append(file, float64(s.Proc.RSSFile))
		res.MaxAnon = max(res.MaxAnon, s.Proc.RSSAnon)
		gor = append(gor, float64(s.St.Goroutines))
		fds = append(fds, float64(s.Proc.FDs))
		res.MaxRSS = max(res.MaxRSS, s.Proc.RSS)
		res.GoroutinesMax = max(res.GoroutinesMax, s.St.Goroutines)
		res.FDsMax = max(res.FDsMax, s.Proc.FDs)
		res.Threads = max(res.Threads, s.Proc.Threads)
	}
	res.SteadyRSS = int64(median(rss))
	res.SteadyAnon = int64(median(anon))
	res.SteadyFile = int64(median(file))
	res.GoroutinesMedian = int(median(gor))
	res.FDsMedian = int(median(fds))
	if dt := last.T - first.T; dt > 0 {
		res.VoluntaryPerSec = float64(last.Proc.Voluntary-first.Proc.Voluntary) / dt
		res.InvoluntaryPerSec = float64(last.Proc.Involuntary-first.Proc.Involuntary) / dt
	}
	if res.VideoBytes > 0 {
		res.WritePerVideoByte = float64(last.Proc.WriteBytes) / float64(res.VideoBytes)
		res.UploadPerVideoByte = float64(last.St.BytesSent) / float64(res.VideoBytes)
	}
	// A fragment is ready when the slot of its last frame ends: the next
	// key frame, which closes it, arrives then. Frame times are the file
	// driver's start + k/fps, paced on the wall clock.
	var lat []float64
	from := first.At
	for _, name := range d.streams {
		for _, f := range r.kvs.Fragments(name) {
			if f.ReceivedAt.Before(from) || f.ReceivedAt.After(last.At) {
				continue
			}
			ready := time.UnixMilli(f.ProducerTime + f.DurationMs).Add(time.Second / clipFPS)
			lat = append(lat, float64(f.ReceivedAt.Sub(ready).Microseconds())/1000)
		}
	}
	res.LatencyN = len(lat)
	res.LatencyP50, res.LatencyP99, res.LatencyMax = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	res.ReadyMs = float64(d.ready.Microseconds()) / 1000
	res.FragmentsStored, res.FragmentsAcked, res.FragmentsLost = last.St.Stored, last.St.Acked, last.St.Lost
	res.Connections = last.St.Connections
	return res
}

// Capture-off check limits.
const (
	settleTimeout = 90 * time.Second
	settlePoll    = 500 * time.Millisecond
	settleStable  = 4 // polls in a row with nothing new
)

// captureOff turns capture off, waits until every stored fragment is
// acknowledged (the ack log is the last thing written), then counts what
// the daemon writes for dur.
func captureOff(ctx context.Context, d *daemon, dur time.Duration) (*captureOffResult, error) {
	t0 := time.Now()
	if err := d.setCapture(ctx, false); err != nil {
		return nil, err
	}
	// Settled: every source is down, nothing is left to acknowledge, and
	// the store count held still over one more poll (the flush of the
	// last fragment may reach the ring just after the state changes).
	deadline := t0.Add(settleTimeout)
	var prev daemonStatus
	for stable := 0; stable < settleStable; {
		st, err := d.status(ctx)
		if err != nil {
			return nil, err
		}
		if st.CaptureOff == len(d.streams) && st.Unacked == 0 && st.Stored == prev.Stored && st.Acked == prev.Acked {
			stable++
		} else {
			stable = 0
		}
		prev = st
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("daemon %s: capture off, but not settled after %v: %d of %d streams off, %d fragments unacknowledged",
				d.spec.Name, settleTimeout, st.CaptureOff, len(d.streams), st.Unacked)
		}
		if err := sleepCtx(ctx, settlePoll); err != nil {
			return nil, err
		}
	}
	res := &captureOffResult{SettleSeconds: time.Since(t0).Seconds()}
	p0, err := readProc(d.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	var sec0 int64
	if d.loop != nil {
		if sec0, err = d.loop.Sectors(); err != nil {
			return nil, err
		}
	}
	snap0, err := snapshotTree(d.state)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := sleepCtx(ctx, dur); err != nil {
		return nil, err
	}
	p1, err := readProc(d.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	if d.loop != nil {
		sec1, err := d.loop.Sectors()
		if err != nil {
			return nil, err
		}
		b := (sec1 - sec0) * 512
		res.DeviceBytes = &b
	}
	snap1, err := snapshotTree(d.state)
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Since(t1).Seconds()
	res.WriteBytes = p1.WriteBytes - p0.WriteBytes
	for p, before := range snap0 {
		if after := snap1[p]; after != before {
			res.ChangedFiles = append(res.ChangedFiles, fmt.Sprintf("%s: %s -> %s", p, before, after))
		}
	}
	for p, after := range snap1 {
		if _, ok := snap0[p]; !ok {
			res.ChangedFiles = append(res.ChangedFiles, fmt.Sprintf("%s: new, %s", p, after))
		}
	}
	slices.Sort(res.ChangedFiles)
	res.StateChanged = len(res.ChangedFiles) > 0
	return res, nil
}

// snapshotTree maps every file under dir to its size and mtime, so two
// snapshots differ when anything was written.
func snapshotTree(dir string) (map[string]string, error) {
	m := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = fmt.Sprintf("size %d mtime %s", fi.Size(), fi.ModTime().UTC().Format("15:04:05.000000"))
		return nil
	})
	return m, err
}

// printTable prints one row per metric and one column per daemon.
func printTable(w io.Writer, rep benchReport) {
	fmt.Fprintf(w, "kvscamd bench-daemon: %s, %d stream(s) of %s (%.2f Mbit/s, 1080p30), %.1f min, ring %d MiB, %s; load %s\n\n",
		rep.Host, rep.Streams, rep.Clip, rep.ClipBPS/1e6, rep.Minutes, rep.RingMiB, rep.Transport, rep.Load)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, f func(r benchResult) string) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, r := range rep.Results {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fl := func(x float64, f string) string {
		if math.IsNaN(x) {
			return "n/a"
		}
		return fmt.Sprintf(f, x)
	}
	row("metric", func(r benchResult) string { return r.Variant })
	row("env", func(r benchResult) string {
		if len(r.Env) == 0 {
			return "-"
		}
		return strings.Join(r.Env, ",")
	})
	row("video minutes (all streams)", func(r benchResult) string { return fl(r.VideoMinutes, "%.2f") })
	row("CPU-s per video-minute (steady)", func(r benchResult) string { return fl(r.CPUPerVideoMin, "%.3f") })
	row("CPU-s per video-minute (incl. start)", func(r benchResult) string { return fl(r.CPUPerVideoMinTotal, "%.3f") })
	row("peak RSS (VmHWM)", func(r benchResult) string { return mib(r.PeakRSS) })
	row("steady RSS (median VmRSS)", func(r benchResult) string { return mib(r.SteadyRSS) })
	row("RSS anon steady / max sampled", func(r benchResult) string { return mib(r.SteadyAnon) + " / " + mib(r.MaxAnon) })
	row("RSS file-backed steady", func(r benchResult) string { return mib(r.SteadyFile) })
	row("goroutines median / max", func(r benchResult) string { return fmt.Sprintf("%d / %d", r.GoroutinesMedian, r.GoroutinesMax) })
	row("threads (max)", func(r benchResult) string { return fmt.Sprint(r.Threads) })
	row("open files median / max", func(r benchResult) string { return fmt.Sprintf("%d / %d", r.FDsMedian, r.FDsMax) })
	row("voluntary ctx switches/s", func(r benchResult) string { return fl(r.VoluntaryPerSec, "%.0f") })
	row("involuntary ctx switches/s", func(r benchResult) string { return fl(r.InvoluntaryPerSec, "%.1f") })
	row("process bytes written / video byte", func(r benchResult) string { return fl(r.WritePerVideoByte, "%.4f") })
	row("device bytes written / video byte", func(r benchResult) string {
		if r.DevicePerVideoByte == nil {
			return "(-loopdev)"
		}
		return fmt.Sprintf("%.4f", *r.DevicePerVideoByte)
	})
	row("upload bytes / video byte", func(r benchResult) string { return fl(r.UploadPerVideoByte, "%.4f") })
	row("ready -> RECEIVED p50 / p99 ms", func(r benchResult) string {
		return fl(r.LatencyP50, "%.0f") + " / " + fl(r.LatencyP99, "%.0f")
	})
	row("fragments stored / acked / lost", func(r benchResult) string {
		return fmt.Sprintf("%d / %d / %d", r.FragmentsStored, r.FragmentsAcked, r.FragmentsLost)
	})
	row("READY after start", func(r benchResult) string { return fl(r.ReadyMs, "%.0f ms") })
	row("binary size", func(r benchResult) string { return mib(r.BinarySize) })
	if len(rep.Results) > 0 && rep.Results[0].CaptureOff != nil {
		row("capture off: process bytes written", func(r benchResult) string {
			return fmt.Sprintf("%d in %.0f s", r.CaptureOff.WriteBytes, r.CaptureOff.Seconds)
		})
		row("capture off: device bytes written", func(r benchResult) string {
			if r.CaptureOff.DeviceBytes == nil {
				return "(-loopdev)"
			}
			return fmt.Sprint(*r.CaptureOff.DeviceBytes)
		})
		row("capture off: state files changed", func(r benchResult) string { return fmt.Sprint(len(r.CaptureOff.ChangedFiles)) })
	}
	tw.Flush()
	for _, r := range rep.Results {
		if r.CaptureOff != nil {
			for _, c := range r.CaptureOff.ChangedFiles {
				fmt.Fprintf(w, "%s: written while capture was off: %s\n", r.Variant, c)
			}
		}
	}
}
