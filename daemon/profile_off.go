//go:build !profiling

package main

import (
	"fmt"
	"io"
	"os"
)

// Names of the profiling hooks (profile.go), which this binary lacks.
const (
	envCPUProfile = "KVSCAMD_CPUPROFILE"
	envMemProfile = "KVSCAMD_MEMPROFILE"
)

// startProfiles says so when a profile is asked for.
func startProfiles(stderr io.Writer) (stop func()) {
	for _, env := range []string{envCPUProfile, envMemProfile} {
		if os.Getenv(env) != "" {
			fmt.Fprintf(stderr, "kvscamd: %s is set, but this binary was built without profiling; build it with: make build TAGS=profiling\n", env)
		}
	}
	return func() {}
}
