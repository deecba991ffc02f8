package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// Growth bounds of the soak: a series fails when, after the warm-up, it
// lifts its floor by more than max(abs, rel × its first-half floor) (see growth).
// They are far above the noise of a flat daemon (GC cycles move RSS by a
// few hundred KiB, a reconnect adds a handful of goroutines for a moment)
// and far below what a leak of one buffer, goroutine or descriptor per
// fragment or per fault adds in a few minutes.
const (
	soakWarmFrac     = 0.2
	soakRSSAbs       = 4 << 20
	soakRSSRel       = 0.15
	soakGoroutineAbs = 8
	soakFDAbs        = 6
	soakCountRel     = 0.2
	// soakFaultHold is how long a fault that lasts (endpoint down, ACKs
	// withheld) is held.
	soakFaultHold = 8 * time.Second
)

// fault is one injected failure: the endpoint's faults and credential
// expiry, in turn.
type fault struct {
	name  string
	apply func(r *rig, streams []string) error
}

var soakFaults = []fault{
	{"connection dropped mid-fragment", func(r *rig, ss []string) error {
		return each(ss, func(s string) error { return r.kvs.DropConnection(s, 64<<10) })
	}},
	{"credentials expired early", func(r *rig, ss []string) error { r.kvs.ExpireCredentials(); return nil }},
	{"ERROR 5000 on a fragment", func(r *rig, ss []string) error {
		return each(ss, func(s string) error { return r.kvs.FailFragment(s, kvslocal.ErrInternal, 0) })
	}},
	{"endpoint 503 for a while", func(r *rig, ss []string) error { r.kvs.Down(kvslocal.Unavailable, soakFaultHold); return nil }},
	{"ACKs withheld for a while", func(r *rig, ss []string) error {
		return each(ss, func(s string) error { return r.kvs.StallAcksFor(s, soakFaultHold) })
	}},
	{"endpoint refuses connections for a while", func(r *rig, ss []string) error { r.kvs.Down(kvslocal.Refused, soakFaultHold); return nil }},
	{"throttled", func(r *rig, ss []string) error {
		return each(ss, func(s string) error { return r.kvs.Throttle(s, 3) })
	}},
	{"IoT endpoint failing while credentials expire", func(r *rig, ss []string) error {
		r.iot.Fail(503, "service unavailable", 3)
		r.kvs.ExpireCredentials()
		return nil
	}},
}

func each(ss []string, f func(string) error) error {
	var errs []error
	for _, s := range ss {
		errs = append(errs, f(s))
	}
	return errors.Join(errs...)
}

type soakSample struct {
	T          float64 `json:"t_s"`
	RSS        int64   `json:"rss_bytes"`
	HWM        int64   `json:"hwm_bytes"`
	Anon       int64   `json:"rss_anon_bytes"`
	Goroutines int     `json:"goroutines"`
	FDs        int     `json:"open_files"`
	Threads    int     `json:"threads"`
	RingFill   float64 `json:"ring_fill"` // used / capacity, all streams
	Frames     uint64  `json:"frames"`
	Acked      uint64  `json:"fragments_acked"`
	Lost       uint64  `json:"fragments_lost"`
	CPU        float64 `json:"cpu_s"`
}

type soakReport struct {
	Started      time.Time     `json:"started"`
	WallSeconds  float64       `json:"wall_seconds"`
	VideoHours   float64       `json:"video_hours_per_stream"`
	TargetHours  float64       `json:"target_video_hours"`
	Streams      int           `json:"streams"`
	RingMiB      int64         `json:"ring_mib"`
	RingWraps    float64       `json:"ring_wraps"` // video bytes / ring size, per stream
	Speed        float64       `json:"speed_vs_realtime"`
	Faults       []string      `json:"faults"`
	CredsIssued  int64         `json:"credentials_issued"`
	Received     int           `json:"fragments_received"`
	Checks       []growthCheck `json:"growth_checks"`
	UploadsAlive bool          `json:"uploads_alive_at_end"`
	OK           bool          `json:"ok"`
	Env          []string      `json:"env,omitempty"`
	Log          string        `json:"log"`
	Samples      []soakSample  `json:"samples"`
}

func runSoak(ctx context.Context, o options, clip *clipInfo) error {
	if len(o.variants) != 1 {
		return errors.New("soak runs one daemon: give at most one -variant")
	}
	work, err := os.MkdirTemp("", "kvscamd-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	r, err := newRig(work, rigOptions{Unthrottled: true, CredLifetime: o.credLife})
	if err != nil {
		return err
	}
	defer r.Close()
	v := o.variants[0]
	d, err := r.startDaemon(ctx, v.binary(o.bin), clip.Path, o.out, daemonSpec{Name: v.Name, Env: v.Env, Streams: o.streams, RingSize: o.ringMiB << 20, LoopDev: o.loopdev, NoAtime: o.noatime})
	if err != nil {
		return err
	}
	defer func() { d.kill(); d.cleanup() }()
	fmt.Fprintf(os.Stderr, "soak: %s READY after %v; up to %.1f min or %.1f h of video per stream, a fault every %v\n",
		v.Name, d.ready.Round(time.Millisecond), o.minutes, o.videoHours, o.faultEvery)

	rep := soakReport{Started: time.Now().UTC(), TargetHours: o.videoHours, Streams: o.streams, RingMiB: o.ringMiB, Env: v.Env, Log: d.logPath}
	targetFrames := uint64(o.videoHours * 3600 * clipFPS * float64(o.streams))
	end := time.Now().Add(time.Duration(o.minutes * float64(time.Minute)))
	nextFault := time.Now().Add(o.faultEvery)
	lastReport := time.Now()
	for {
		s, err := sampleOnce(ctx, d)
		if err != nil {
			return err
		}
		ss := soakSample{T: s.T, RSS: s.Proc.RSS, HWM: s.Proc.HWM, Anon: s.Proc.RSSAnon, Goroutines: s.St.Goroutines, FDs: s.Proc.FDs,
			Threads: s.Proc.Threads, Frames: s.St.Frames, Acked: s.St.Acked, Lost: s.St.Lost, CPU: s.Proc.CPUSeconds}
		if s.St.RingCap > 0 {
			ss.RingFill = float64(s.St.RingUsed) / float64(s.St.RingCap)
		}
		rep.Samples = append(rep.Samples, ss)
		if s.St.Frames >= targetFrames || time.Now().After(end) {
			break
		}
		if time.Now().After(nextFault) {
			f := soakFaults[len(rep.Faults)%len(soakFaults)]
			if err := f.apply(r, d.streams); err != nil {
				return fmt.Errorf("inject %s: %w", f.name, err)
			}
			rep.Faults = append(rep.Faults, fmt.Sprintf("%.0fs %s", s.T, f.name))
			fmt.Fprintf(os.Stderr, "soak: t=%.0fs fault: %s\n", s.T, f.name)
			nextFault = time.Now().Add(o.faultEvery)
		}
		if time.Since(lastReport) > time.Minute {
			fmt.Fprintf(os.Stderr, "soak: t=%.0fs %.2f h of video per stream, RSS %.1f MiB, %d goroutines, %d fds, ring %.0f%%, %d acked, %d lost\n",
				s.T, float64(s.St.Frames)/float64(o.streams)/clipFPS/3600, float64(ss.RSS)/(1<<20), ss.Goroutines, ss.FDs, 100*ss.RingFill, ss.Acked, ss.Lost)
			lastReport = time.Now()
		}
		if err := sleepCtx(ctx, o.sampleDt); err != nil {
			return err
		}
	}
	last := rep.Samples[len(rep.Samples)-1]
	rep.WallSeconds = last.T
	rep.VideoHours = float64(last.Frames) / float64(o.streams) / clipFPS / 3600
	rep.RingWraps = float64(clip.videoBytes(last.Frames/uint64(o.streams))) / float64(o.ringMiB<<20)
	rep.Speed = rep.VideoHours * 3600 / last.T
	rep.CredsIssued = r.iot.Served()
	for _, s := range d.streams {
		rep.Received += len(r.kvs.Fragments(s))
	}
	// Uploads must still work after the faults: fragments acknowledged in
	// the last third of the run.
	third := rep.Samples[len(rep.Samples)*2/3]
	rep.UploadsAlive = last.Acked > third.Acked

	var t, rss, anon, gor, fds, fill []float64
	for _, s := range rep.Samples {
		t = append(t, s.T)
		rss = append(rss, float64(s.RSS)/(1<<20))
		anon = append(anon, float64(s.Anon)/(1<<20))
		gor = append(gor, float64(s.Goroutines))
		fds = append(fds, float64(s.FDs))
		fill = append(fill, 100*s.RingFill)
	}
	rep.Checks = []growthCheck{
		growth("rss_mib", t, rss, soakWarmFrac, soakRSSAbs/(1<<20), soakRSSRel),
		growth("anon_mib", t, anon, soakWarmFrac, soakRSSAbs/(1<<20), soakRSSRel),
		growth("goroutines", t, gor, soakWarmFrac, soakGoroutineAbs, soakCountRel),
		growth("open_files", t, fds, soakWarmFrac, soakFDAbs, soakCountRel),
	}
	_, stopErr := d.stop()
	rep.OK = rep.UploadsAlive && stopErr == nil
	var failed []string
	for _, c := range rep.Checks {
		if !c.OK {
			rep.OK = false
			failed = append(failed, fmt.Sprintf("%s grew by %.2f (bound %.2f; first-half floor %.2f, second-half floor %.2f, floor trend per half %.2f)",
				c.Series, c.Growth, c.Bound, c.First, c.Second, c.Trend))
		}
	}
	jsonPath := filepath.Join(o.out, "soak.json")
	svgPath := filepath.Join(o.out, "soak.svg")
	if err := writeJSON(jsonPath, rep); err != nil {
		return err
	}
	f, err := os.Create(svgPath)
	if err != nil {
		return err
	}
	title := fmt.Sprintf("kvscamd soak: %.1f h of 1080p30 4 Mbit/s video per stream in %.1f min (%.0fx real time), %d faults, ring wrapped %.1fx",
		rep.VideoHours, rep.WallSeconds/60, rep.Speed, len(rep.Faults), rep.RingWraps)
	err = writeSVG(f, title, t, []series{
		{"RSS", "MiB", rss}, {"RSS, anonymous part", "MiB", anon}, {"goroutines", "count", gor}, {"open files", "count", fds}, {"ring fill", "%", fill},
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("soak: %.2f h of video per stream in %.1f min (%.0fx real time), ring wrapped %.1f times, %d faults, %d credential sets issued, %d fragments received\n",
		rep.VideoHours, rep.WallSeconds/60, rep.Speed, rep.RingWraps, len(rep.Faults), rep.CredsIssued, rep.Received)
	for _, c := range rep.Checks {
		fmt.Printf("soak: %-10s first-half floor %8.2f  second-half floor %8.2f  trend %+7.2f  bound %6.2f  %s\n",
			c.Series, c.First, c.Second, c.Trend, c.Bound, map[bool]string{true: "flat", false: "GROWS"}[c.OK])
	}
	fmt.Printf("soak: plot %s, data %s\n", svgPath, jsonPath)
	if !rep.UploadsAlive {
		failed = append(failed, fmt.Sprintf("no fragment acknowledged in the last third of the run (see %s)", d.logPath))
	}
	if stopErr != nil {
		failed = append(failed, stopErr.Error())
	}
	if len(failed) > 0 {
		return fmt.Errorf("soak failed: %s", strings.Join(failed, "; "))
	}
	fmt.Println("soak: ok")
	return nil
}
