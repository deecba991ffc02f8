package drivers

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Second}
	// Short runs: the upper bound doubles up to Max; each wait lies in
	// the upper half of its bound.
	for i, bound := range []time.Duration{1, 2, 4, 5, 5} {
		bound *= time.Second
		if w := b.Wait(time.Millisecond); w < bound/2 || w > bound {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, w, bound/2, bound)
		}
	}
	// A healthy run starts over from Min.
	if w := b.Wait(HealthyRun); w < time.Second/2 || w > time.Second {
		t.Fatalf("wait after a healthy run = %v", w)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported a full wait after cancellation")
	}
	if !Sleep(t.Context(), time.Nanosecond) {
		t.Fatal("a 1 ns Sleep did not complete")
	}
}
