package main

import (
	"os"
	"runtime/debug"
)

// The garbage collector's defaults for the daemon, chosen with the
// whole-daemon benchmark (make bench-daemon; the numbers are in
// README.md, "Memory, CPU and SD-card wear"). The environment variables
// GOGC and GOMEMLIMIT override each one, as for any Go program:
// GOGC=100 GOMEMLIMIT=off restores Go's own defaults.
const (
	// defaultGOGC collects when the heap has grown by half over the live
	// heap instead of doubling: measured side by side, peak RSS fell by
	// 13 % (one stream) to 20 % (four) for 8-9 % more CPU.
	defaultGOGC = 50
	// defaultMemoryLimit is a soft cap on the Go runtime's memory, a
	// safety net for a 512 MB device: near it the collector runs more
	// often whatever GOGC says. It must sit far above the live heap of
	// every configuration, which grows with the number of streams: at
	// 24 MiB four streams spent 8 times the CPU collecting. Four streams
	// use about 56 MiB.
	defaultMemoryLimit = 128 << 20
)

// tuneGC applies the defaults that the environment does not set.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
