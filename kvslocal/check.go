package kvslocal

import (
	"io"
	"time"
)

// CheckOptions are the limits CheckStream applies; zero values mean the
// service's limits, as for Options.
type CheckOptions struct {
	// Relative selects RELATIVE fragment timecodes, offset by
	// ProducerStart.
	Relative      bool
	ProducerStart time.Time
	// Now is the clock for the future-timestamp rule (default time.Now).
	Now                 func() time.Time
	MaxFutureTimestamp  time.Duration // negative disables
	MaxFragmentSize     int64
	MaxFragmentDuration time.Duration
	MinFragmentDuration time.Duration // negative disables
	MaxTracks           int
	MaxFragmentMetadata int
}

// CheckStream validates a whole PutMedia body offline with the same
// parser and rules the server applies, and returns the fragments it would
// have acknowledged. A rule violation is returned as *StreamError, after
// the fragments completed before it. Use it to check what a producer
// writes without starting a server.
func CheckStream(r io.Reader, o CheckOptions) ([]Fragment, error) {
	so := Options{
		MaxFragmentSize:     o.MaxFragmentSize,
		MaxFragmentDuration: o.MaxFragmentDuration,
		MinFragmentDuration: o.MinFragmentDuration,
		MaxTracks:           o.MaxTracks,
		MaxFragmentMetadata: o.MaxFragmentMetadata,
		MaxFutureTimestamp:  o.MaxFutureTimestamp,
		Now:                 o.Now,
	}
	so.setDefaults()
	sink := &collectSink{}
	p := newParser(r, mkvConfig{
		MaxFragmentSize:     so.MaxFragmentSize,
		MaxFragmentDuration: so.MaxFragmentDuration,
		MinFragmentDuration: so.MinFragmentDuration,
		MaxTracks:           so.MaxTracks,
		MaxMetadata:         so.MaxFragmentMetadata,
		MaxFuture:           so.MaxFutureTimestamp,
		Relative:            o.Relative,
		ProducerStart:       time.Duration(o.ProducerStart.UnixNano()),
		Now:                 so.Now,
	}, sink)
	err := p.run()
	sink.held = p.maxHeldBuffer
	return sink.frags, err
}

// collectSink records fragments for CheckStream.
type collectSink struct {
	frags []Fragment
	held  int
}

func (c *collectSink) fragmentStart(f *fragment) error {
	f.dropAfter = -1
	return nil
}

func (c *collectSink) fragmentBytes(*fragment) error { return nil }

func (c *collectSink) fragmentComplete(f *fragment, _ string) error {
	c.frags = append(c.frags, f.record())
	return nil
}
