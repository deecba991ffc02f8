package main

import (
	"os"
	"runtime"
	"runtime/debug"
)

// The Go runtime's defaults for the daemon, chosen with the whole-daemon
// benchmark (make bench-daemon; the numbers are in README.md, "Memory,
// CPU and SD-card wear"). The environment variables GOMAXPROCS, GOGC and
// GOMEMLIMIT override each one, as for any Go program: GOMAXPROCS=0
// GOGC=100 GOMEMLIMIT=off restores Go's own defaults.
const (
	// defaultMaxProcs runs Go code on one thread at a time. The daemon
	// waits almost all the time (about 1 % of a core per stream), and with
	// a P per core every frame woke idle threads that spun for work and
	// slept again: measured side by side on two cores, one P cut the CPU
	// per minute of video by 29 % and involuntary context switches from
	// 42 to 12 per second. Blocking system calls (fdatasync on a slow
	// card, V4L2 ioctls) still run on threads of their own.
	defaultMaxProcs = 1
	// defaultGOGC collects when the heap has grown by a quarter over the
	// live heap instead of doubling. Frames, records and read buffers are
	// reused, so little garbage is made and collecting often costs little:
	// measured side by side (four streams), GOGC 50 → 25 took peak RSS
	// from 43.5 to 41.4 MiB for the same CPU (0.443 and 0.444 CPU-s per
	// minute of video).
	defaultGOGC = 25
	// defaultMemoryLimit is a soft cap on the Go runtime's memory, a
	// safety net for a 512 MB device: near it the collector runs more
	// often whatever GOGC says. It must sit far above the live heap of
	// every configuration, which grows with the number of streams: at
	// 24 MiB four streams spent 8 times the CPU collecting. Four streams
	// use about 56 MiB.
	defaultMemoryLimit = 128 << 20
)

// tuneRuntime applies the defaults that the environment does not set.
func tuneRuntime() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(defaultMaxProcs)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
