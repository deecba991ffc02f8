package kvslocal

import (
	"bytes"
	"time"
)

// ParseHeld parses b with the given fragment size limit and reports the
// largest fragment buffer the parser held, for the fuzz test's memory bound.
func ParseHeld(b []byte, maxFragment int64, now time.Time) (held int, frags int, err error) {
	sink := &collectSink{}
	p := newParser(bytes.NewReader(b), mkvConfig{
		MaxFragmentSize:     maxFragment,
		MaxFragmentDuration: DefaultMaxFragmentDuration,
		MaxTracks:           DefaultMaxTracks,
		MaxMetadata:         DefaultMaxFragmentMetadata,
		MaxFuture:           DefaultMaxFutureTimestamp,
		Now:                 func() time.Time { return now },
	}, sink)
	err = p.run()
	return p.maxHeldBuffer, len(sink.frags), err
}
