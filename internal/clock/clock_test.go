package clock

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var _ Clock = System{}
var _ Clock = (*Fake)(nil)

func TestSystemClock(t *testing.T) {
	s := System{Mode: SyncWait, FlagFile: filepath.Join(t.TempDir(), "synchronized")}
	m1 := s.Mono()
	m2 := s.Mono()
	if m1 <= 0 || m2 < m1 {
		t.Fatalf("CLOCK_MONOTONIC not increasing: %v then %v", m1, m2)
	}
	k, err := KernelSync()
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if st.Synced != k.Synced || st.Synced != s.Synced() {
		t.Fatalf("without flag file Status %+v disagrees with kernel %+v", st, k)
	}
	if !st.Synced && st.Detail == "" {
		t.Fatal("unsynchronised status without an explanation")
	}
	// The timesyncd flag alone makes the clock synchronised.
	if err := os.WriteFile(s.FlagFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); !st.Synced || (st.Source != "timesyncd" && st.Source != "kernel") {
		t.Fatalf("with flag file: %+v", st)
	}
	if st := (System{Mode: SyncTrust}).Status(); !st.Synced || st.Source != "trust" {
		t.Fatalf("trust mode: %+v", st)
	}
	if SyncTrust.String() != "trust" || SyncWait.String() != "wait" {
		t.Fatal("SyncMode.String does not name the clock_sync values")
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, System{}, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep after cancellation = %v", err)
	}
	if err := Sleep(t.Context(), System{}, time.Nanosecond); err != nil {
		t.Fatalf("a 1 ns Sleep = %v", err)
	}
	if err := Sleep(t.Context(), NewFake(time.Time{}), 0); err != nil {
		t.Fatalf("a zero Sleep = %v", err)
	}
}

func TestFakeWaitsEndWhenAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	done := make(chan error)
	go func() { done <- Sleep(t.Context(), f, time.Minute) }()
	f.BlockUntil(1)
	late := f.After(2 * time.Minute)

	// A wall clock step is not time passing: no wait ends.
	f.Step(time.Hour)
	f.Advance(59 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Sleep ended early (%v)", err)
	default:
	}
	f.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Waiting() != 1 {
		t.Fatalf("%d waits pending, want the 2 min one", f.Waiting())
	}
	f.Advance(time.Minute)
	if got := <-late; !got.Equal(start.Add(time.Hour + 2*time.Minute)) {
		t.Fatalf("After delivered %v", got)
	}
	if f.Mono() != 2*time.Minute {
		t.Fatalf("Mono = %v", f.Mono())
	}
}

func TestFakeAutoAdvance(t *testing.T) {
	f := NewFake(time.Unix(1e9, 0))
	f.AutoAdvance()
	for range 3 {
		if err := Sleep(t.Context(), f, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.Now().Sub(time.Unix(1e9, 0)); got != 3*time.Second {
		t.Fatalf("three 1 s sleeps moved the clock by %v", got)
	}
}

func TestFakeSynced(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	if !f.Synced() {
		t.Fatal("a new Fake is not synchronised")
	}
	f.SetSynced(false)
	f.Set(time.Unix(5, 0))
	if f.Synced() || !f.Now().Equal(time.Unix(5, 0)) {
		t.Fatalf("after SetSynced(false), Set: synced %v, now %v", f.Synced(), f.Now())
	}
}

// Monotonic follows CLOCK_MONOTONIC as the kernel reads it: V4L2 buffer
// times are compared with it to the millisecond.
func TestMonotonicMatchesKernel(t *testing.T) {
	for range 100 {
		a, _ := readMonotonic()
		m := Monotonic()
		b, _ := readMonotonic()
		if m < a-time.Millisecond || m > b+time.Millisecond {
			t.Fatalf("Monotonic %v outside the kernel's [%v, %v]", m, a, b)
		}
	}
}

func BenchmarkMonotonic(b *testing.B) {
	for b.Loop() {
		Monotonic()
	}
}
