package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// The daemon's runtime defaults apply unless the environment sets the
// variable, as Go's own settings do.
func TestTuneRuntime(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	gcPercent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetGCPercent(gcPercent)
		debug.SetMemoryLimit(limit)
	})

	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
		t.Setenv(k, "")
	}
	runtime.GOMAXPROCS(4)
	tuneRuntime()
	if got := runtime.GOMAXPROCS(0); got != defaultMaxProcs {
		t.Errorf("GOMAXPROCS %d, want %d", got, defaultMaxProcs)
	}
	if got := debug.SetGCPercent(100); got != defaultGOGC {
		t.Errorf("GOGC %d, want %d", got, defaultGOGC)
	}
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("memory limit %d, want %d", got, defaultMemoryLimit)
	}

	// Set in the environment: left to the runtime, which read it at start.
	t.Setenv("GOMAXPROCS", "4")
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "off")
	runtime.GOMAXPROCS(4)
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(1 << 40)
	tuneRuntime()
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Errorf("GOMAXPROCS %d with GOMAXPROCS=4 set, want it left at 4", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC %d with GOGC=100 set, want it left at 100", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("memory limit %d with GOMEMLIMIT=off set, want it left", got)
	}
}
