// Package kvs holds the Kinesis Video Streams facts that more than one part
// of kvscamd depends on: the per-stream quotas, the protocol limits and the
// stream-name rule. Configuration checking, the sender and the local test
// endpoint all read them from here, so that `kvscamd check`, `kvscamd run`
// and the tests cannot disagree about what the service accepts.
package kvs

import (
	"fmt"
	"time"
)

// Per-stream service quotas (PutMedia).
const (
	// MaxFragmentsPerSecond is the PutMedia fragment-rate quota.
	MaxFragmentsPerSecond = 5
	// MaxBytesPerSecond is the PutMedia data-rate quota (12.5 MB/s).
	MaxBytesPerSecond = 12_500_000
	// MaxConnectsPerSecond is the PutMedia call-rate quota.
	MaxConnectsPerSecond = 5
	// MaxConnectionAge is when the service ends a PutMedia connection.
	MaxConnectionAge = 45 * time.Minute
	// IdleTimeout is when the service closes a request without data.
	IdleTimeout = 30 * time.Second
	// MinFragmentDuration and MaxFragmentDuration bound a fragment's
	// duration; 2-10 s is what the service recommends.
	MinFragmentDuration = 1 * time.Second
	MaxFragmentDuration = 20 * time.Second
	// MaxFragmentBytes is the largest fragment the service accepts.
	MaxFragmentBytes = 50_000_000
	// MaxTracks is the number of tracks a stream may carry.
	MaxTracks = 3
)

// MaxStreamNameLen is the longest stream name the service accepts.
const MaxStreamNameLen = 256

// CheckStreamName returns an error naming the problem when name is not a
// stream name kvscamd can use. Besides the service's rule (1-256 characters
// of a-z A-Z 0-9 _ . -), kvscamd keeps each stream's ring in a directory of
// that name, so "." and ".." are refused too.
func CheckStreamName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("stream name is empty; use 1..%d characters of a-z A-Z 0-9 _ . -", MaxStreamNameLen)
	case len(name) > MaxStreamNameLen:
		return fmt.Errorf("stream name %q is %d characters long; use at most %d", name, len(name), MaxStreamNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("stream name %q cannot name the stream's ring directory; use letters, digits, '_', '.' and '-' with at least one that is not '.'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("stream name %q has %q at position %d; use only a-z A-Z 0-9 _ . -", name, c, i+1)
		}
	}
	return nil
}
