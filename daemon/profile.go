//go:build profiling

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
)

// Profiling hooks for measurements of the whole daemon (the benchmark
// harness in daemon/benchdaemon sets them), in binaries built with the
// profiling tag only (make build TAGS=profiling): runtime/pprof and its
// encoder add 240 KB to the binary, and on a camera the binary's pages
// are resident memory.
const (
	envCPUProfile = "KVSCAMD_CPUPROFILE" // file for a CPU profile of the whole run
	envMemProfile = "KVSCAMD_MEMPROFILE" // file for an allocation profile written at exit
)

// startProfiles starts what the environment asks for and returns the
// function that finishes the profiles; it must run before the process
// exits. A profile that cannot be written is reported on stderr and does
// not stop the daemon.
func startProfiles(stderr io.Writer) (stop func()) {
	var cpu *os.File
	if path := os.Getenv(envCPUProfile); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "kvscamd: %s=%s: %v\n", envCPUProfile, path, err)
		} else {
			cpu = f
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if path := os.Getenv(envMemProfile); path != "" {
			if err := writeAllocs(path); err != nil {
				fmt.Fprintf(stderr, "kvscamd: %s=%s: %v\n", envMemProfile, path, err)
			}
		}
	}
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile shows the state as of the last GC
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}
