// Package clock is the one time source of the daemon: the wall clock, the
// kernel's monotonic clock, whether the wall clock can be trusted yet, and
// waiting. Code that reads or waits on time takes a Clock, so that tests
// drive it with a Fake instead of waiting for real.
//
// The package is a leaf (it imports nothing of the project), so that the
// drivers, the uploader and the credential providers can all share it.
// Mapping capture instants to wall time is drivers/clock's business.
package clock

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is what code reads time from and waits on.
type Clock interface {
	// Now is the wall clock.
	Now() time.Time
	// Mono is CLOCK_MONOTONIC: time since boot, never stepped. V4L2
	// buffer timestamps are on this clock.
	Mono() time.Duration
	// Synced reports whether the wall clock is known to be right.
	Synced() bool
	// After delivers the time once d has passed on this clock, like
	// time.After. It is the primitive for waits that also watch other
	// channels; plain waits use Sleep.
	After(d time.Duration) <-chan time.Time
}

// Sleep waits d on c, or less if ctx ends first; it returns ctx.Err() then
// and nil after the whole wait. A d of zero or less does not wait.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-c.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SyncMode is the clock_sync configuration key: when the wall clock counts
// as synchronised.
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

func (m SyncMode) String() string {
	if m == SyncTrust {
		return "trust"
	}
	return "wait"
}

// TimesyncdFlag is the file systemd-timesyncd creates once it has
// synchronised the clock.
const TimesyncdFlag = "/run/systemd/timesync/synchronized"

// System is the machine's clock. Its zero value waits for
// synchronisation (SyncWait) and is ready to use.
type System struct {
	Mode SyncMode
	// FlagFile overrides TimesyncdFlag (tests); empty means TimesyncdFlag.
	FlagFile string
}

// Now returns the wall clock.
func (System) Now() time.Time { return time.Now() }

// Mono returns CLOCK_MONOTONIC.
func (System) Mono() time.Duration { return Monotonic() }

// After is time.After; an unfired timer is collected like any value since
// Go 1.23, so callers that stop waiting early leak nothing.
func (System) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Monotonic reads CLOCK_MONOTONIC, the clock V4L2 stamps buffers with.
// It is read once through the system call and then followed with Go's own
// monotonic clock, which on Linux is CLOCK_MONOTONIC read through the vDSO:
// the same clock without a system call per frame.
func Monotonic() time.Duration { return monoBase + time.Since(monoAt) }

// monoBase is CLOCK_MONOTONIC at the instant monoAt.
var monoBase, monoAt = readMonotonic()

func readMonotonic() (time.Duration, time.Time) {
	var ts unix.Timespec
	before := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux since 2.6; failing here
		// means the process cannot work at all.
		panic("BUG: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	after := time.Now()
	return time.Duration(ts.Nano()), before.Add(after.Sub(before) / 2)
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
