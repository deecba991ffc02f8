// Package clock maps capture timestamps taken on the kernel's monotonic
// clock to wall-clock time, and knows whether the wall clock can be trusted.
//
// The rule: a Raspberry Pi boots without a real-time clock, so until NTP has
// synchronised it the wall clock may be hours or years off, and it will step
// when NTP catches up. A fragment stamped with such a clock is rejected by
// Kinesis Video Streams (more than 15 minutes off) or, worse, accepted at the
// wrong place in the archive. So no frame is ever stamped with an
// unsynchronised clock.
//
// No video waits for the clock: frames keep their CLOCK_MONOTONIC capture
// instant (V4L2 buffers carry it; other sources read it at arrival) and,
// while the wall clock is unsynchronised, go on without wall time, to be
// stored at once with that instant and the boot id. The monotonic clock
// runs from boot and is never stepped, so once the wall clock is
// synchronised a single offset wall−mono, measured then, places every
// frame of the boot exactly: wall = mono + offset. Frames of an earlier
// boot can never be placed; they are kept, never uploaded with a guessed
// time.
//
// After that anchor, wall time keeps being derived from the monotonic
// instant, so a later clock step cannot reorder frames. Steps are still
// followed, in a way that keeps every timestamp strictly increasing and
// distinct at millisecond resolution (the Matroska timecode unit):
//   - a forward step is applied at the next key frame, where a new fragment
//     begins, so it shows up as a gap between fragments, never inside one;
//   - a backward step cannot be applied at once without going back in time,
//     so it is slewed in: the timeline runs slower (by MaxSlew) until it has
//     caught up with the clock.
//
// Once anchored, an offset is kept even if the kernel later reports the
// clock unsynchronised again (NTP unreachable for hours): the monotonic
// clock still runs and the last good offset is the best estimate there is.
package clock

import (
	"fmt"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// Clock is the time source the drivers and the Mapper read; it is the
// project's one clock interface, named here so that driver configuration
// needs no second import. Tests inject clock.Fake from internal/clock.
type Clock = clock.Clock

// System is the machine's clock, with the clock_sync mode ParseSyncMode
// returns: clock.System{Mode: mode}.
type System = clock.System

// SyncMode is the clock_sync configuration key.
type SyncMode = clock.SyncMode

// The clock_sync values.
const (
	SyncWait  = clock.SyncWait
	SyncTrust = clock.SyncTrust
)

// ParseSyncMode parses the clock_sync key.
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "", "wait":
		return SyncWait, nil
	case "trust":
		return SyncTrust, nil
	}
	return 0, fmt.Errorf("clock: clock_sync = %q: want \"wait\" or \"trust\"", s)
}
