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
// No video is lost while waiting: frames keep their CLOCK_MONOTONIC capture
// instant (V4L2 buffers carry it; other sources read it at arrival) and wait
// in a bounded queue (Mapper). The monotonic clock runs from boot and is
// never stepped, so once the wall clock is synchronised a single offset
// wall−mono, measured then, places every held frame exactly: wall = mono +
// offset. Only when the queue would exceed its memory cap are the oldest
// whole GOPs dropped, counted and logged with the reason.
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
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is the time source the drivers and the Mapper use. Tests inject
// Fake; production code uses System.
type Clock interface {
	// Now is the wall clock.
	Now() time.Time
	// Mono is CLOCK_MONOTONIC: time since boot, never stepped. V4L2 buffer
	// timestamps are on this clock.
	Mono() time.Duration
	// Synced reports whether the wall clock is known to be right.
	Synced() bool
}

// SyncMode is the clock_sync configuration key.
type SyncMode int

const (
	// SyncWait trusts the wall clock only once the kernel (or
	// systemd-timesyncd) says it is synchronised.
	SyncWait SyncMode = iota
	// SyncTrust treats the wall clock as right from the start, for hosts
	// whose clock is kept by something the kernel does not know about
	// (VMs, containers).
	SyncTrust
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

func (m SyncMode) String() string {
	if m == SyncTrust {
		return "trust"
	}
	return "wait"
}

// TimesyncdFlag is the file systemd-timesyncd creates once it has
// synchronised the clock.
const TimesyncdFlag = "/run/systemd/timesync/synchronized"

// System is the machine's clock.
type System struct {
	Mode SyncMode
	// FlagFile overrides TimesyncdFlag (tests); empty means TimesyncdFlag.
	FlagFile string
}

// Now returns the wall clock.
func (System) Now() time.Time { return time.Now() }

// Mono returns CLOCK_MONOTONIC.
func (System) Mono() time.Duration { return Monotonic() }

// Monotonic reads CLOCK_MONOTONIC, the clock V4L2 stamps buffers with.
func Monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux since 2.6; failing here
		// means the process cannot work at all.
		panic("BUG: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return time.Duration(ts.Nano())
}

// Synced reports whether the wall clock can be used: always in trust mode,
// otherwise when the kernel or systemd-timesyncd says so.
func (s System) Synced() bool {
	if s.Mode == SyncTrust {
		return true
	}
	return s.Status().Synced
}

// Status describes the synchronisation state of the wall clock.
type Status struct {
	Synced bool
	// Source names what vouched for the clock: "kernel", "timesyncd",
	// "trust", or "" when unsynchronised.
	Source string
	// MaxError is the kernel's maximum error estimate.
	MaxError time.Duration
	// Detail explains the state for `kvscamd check` and logs.
	Detail string
}

// Status reads the kernel's NTP state (adjtimex, read-only, no privileges
// needed) and the timesyncd flag file.
func (s System) Status() Status {
	if s.Mode == SyncTrust {
		return Status{Synced: true, Source: "trust", Detail: `clock_sync = "trust": the wall clock is taken as right`}
	}
	k, kerr := KernelSync()
	if kerr == nil && k.Synced {
		return k
	}
	flag := s.FlagFile
	if flag == "" {
		flag = TimesyncdFlag
	}
	if _, err := os.Stat(flag); err == nil {
		return Status{Synced: true, Source: "timesyncd", Detail: flag + " exists"}
	}
	detail := "kernel reports the clock unsynchronised and " + flag + " does not exist"
	if kerr != nil {
		detail = kerr.Error() + " and " + flag + " does not exist"
	}
	return Status{Detail: detail + `; enable NTP (systemd-timesyncd or chrony), or set clock_sync = "trust" if the clock is kept right another way`}
}

// KernelSync asks the kernel whether its clock is synchronised: adjtimex
// returns TIME_ERROR or sets STA_UNSYNC until an NTP daemon disciplines it.
func KernelSync() (Status, error) {
	var tx unix.Timex // Modes == 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return Status{}, fmt.Errorf("clock: adjtimex: %w", err)
	}
	st := Status{MaxError: time.Duration(tx.Maxerror) * time.Microsecond}
	if state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0 {
		st.Detail = fmt.Sprintf("kernel: unsynchronised (adjtimex state %d, status %#x)", state, tx.Status)
		return st, nil
	}
	st.Synced, st.Source = true, "kernel"
	st.Detail = fmt.Sprintf("kernel: synchronised, max error %v", st.MaxError)
	return st, nil
}

// ErrNotMonotonic is reported by the drivers when a device stamps buffers
// with something other than CLOCK_MONOTONIC.
var ErrNotMonotonic = errors.New("clock: timestamp is not on CLOCK_MONOTONIC")

// Fake is a Clock driven by hand, for tests. Its zero value is not usable;
// use NewFake.
type Fake struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	synced bool
}

// NewFake returns a Fake clock reading wall and mono, synchronised or not.
func NewFake(wall time.Time, mono time.Duration, synced bool) *Fake {
	return &Fake{wall: wall, mono: mono, synced: synced}
}

// Now implements Clock.
func (f *Fake) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.wall }

// Mono implements Clock.
func (f *Fake) Mono() time.Duration { f.mu.Lock(); defer f.mu.Unlock(); return f.mono }

// Synced implements Clock.
func (f *Fake) Synced() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.synced }

// Advance lets d pass on both clocks.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mono += d
	f.wall = f.wall.Add(d)
}

// Step moves the wall clock by d, as settimeofday or an NTP step does.
func (f *Fake) Step(d time.Duration) { f.mu.Lock(); defer f.mu.Unlock(); f.wall = f.wall.Add(d) }

// SetSynced changes what Synced reports.
func (f *Fake) SetSynced(s bool) { f.mu.Lock(); defer f.mu.Unlock(); f.synced = s }
