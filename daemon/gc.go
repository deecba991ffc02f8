package main

import (
	"os"
	"runtime/debug"
)

// The garbage collector's defaults for the daemon, chosen with the
// whole-daemon benchmark (make bench-daemon; the numbers are in
// README.md's "Memory and CPU" section). The environment variables GOGC
// and GOMEMLIMIT override each one, as for any Go program, e.g.
// GOGC=100 GOMEMLIMIT=off restores Go's own defaults.
const (
	// defaultGOGC collects when the heap has grown by this percentage
	// over the live heap. The daemon's live heap is small and steady, so
	// a lower value trades a little CPU for a lower peak.
	defaultGOGC = 50
	// defaultMemoryLimit is a soft limit on the Go runtime's memory: near
	// it the collector runs more often whatever GOGC says. It is set well
	// above the steady use of four streams, so that it only caps bursts
	// (reconnects, a large backlog) instead of making the collector
	// thrash.
	defaultMemoryLimit = 24 << 20
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
