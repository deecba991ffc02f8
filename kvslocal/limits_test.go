package kvslocal_test

import (
	"strings"
	"testing"

	"github.com/kvscamd/kvscamd/internal/kvs"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// The endpoint is an oracle for the service: its default limits must be at
// least as strict as the service's, or a producer could pass here and fail
// against the real thing.
func TestDefaultsAtLeastAsStrictAsService(t *testing.T) {
	checks := []struct {
		name        string
		local, kvsv float64
	}{
		{"idle timeout", float64(kvslocal.DefaultIdleTimeout), float64(kvs.IdleTimeout)},
		{"connection duration", float64(kvslocal.DefaultMaxConnectionDuration), float64(kvs.MaxConnectionAge)},
		{"fragment duration", float64(kvslocal.DefaultMaxFragmentDuration), float64(kvs.MaxFragmentDuration)},
		{"fragment size", kvslocal.DefaultMaxFragmentSize, kvs.MaxFragmentBytes},
		{"fragments per second", kvslocal.DefaultMaxFragmentsPerSecond, kvs.MaxFragmentsPerSecond},
		{"bytes per second", kvslocal.DefaultMaxBytesPerSecond, kvs.MaxBytesPerSecond},
		{"PutMedia calls per second", kvslocal.DefaultPutMediaCallsPerSec, kvs.MaxConnectsPerSecond},
		{"tracks", kvslocal.DefaultMaxTracks, kvs.MaxTracks},
	}
	for _, c := range checks {
		if c.local > c.kvsv {
			t.Errorf("%s: endpoint allows %v, the service only %v", c.name, c.local, c.kvsv)
		}
	}
}

// Stream names follow kvs.CheckStreamName, on the control plane as in
// CreateStream.
func TestStreamNameRule(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	for _, name := range []string{"", ".", "..", "a/b", "cam 1", strings.Repeat("x", kvs.MaxStreamNameLen+1)} {
		if _, err := srv.CreateStream(name, 0); err == nil {
			t.Errorf("CreateStream(%q) succeeded; kvs.CheckStreamName refuses it", name)
		}
	}
	for _, name := range []string{"cam-1", "A.b_c-9", strings.Repeat("x", kvs.MaxStreamNameLen)} {
		if _, err := srv.CreateStream(name, 0); err != nil {
			t.Errorf("CreateStream(%q): %v", name, err)
		}
	}
}
