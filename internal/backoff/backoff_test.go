package backoff

import (
	"testing"
	"time"
)

// bounds are the doubling bounds from 1 s to 5 s.
var bounds = []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}

func TestEqualJitterStaysInUpperHalf(t *testing.T) {
	b := New(time.Second, 5*time.Second)
	for n, bound := range bounds {
		for range 100 {
			if d := b.Delay(n + 1); d < bound/2 || d > bound {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n+1, d, bound/2, bound)
			}
		}
	}
}

func TestFullJitterSpansTheBound(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: 4 * time.Second, Jitter: Full}
	var low bool
	for range 1000 {
		d := b.Delay(3)
		if d < 0 || d > 4*time.Second {
			t.Fatalf("Delay(3) = %v, want within [0, 4s]", d)
		}
		low = low || d < time.Second
	}
	if !low {
		t.Fatal("1000 full-jitter waits never fell below a quarter of the bound")
	}
}

func TestNoJitterDoubles(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: 5 * time.Second, Jitter: None}
	for i, want := range bounds {
		if d := b.Next(); d != want {
			t.Fatalf("wait %d = %v, want %v", i+1, d, want)
		}
	}
	if b.Attempts() != len(bounds) {
		t.Fatalf("Attempts = %d", b.Attempts())
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after Reset: %v, want Min", d)
	}
}

func TestEdgeCases(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: time.Millisecond, Jitter: None}
	if d := b.Delay(5); d != time.Second {
		t.Fatalf("Max below Min: %v, want Min", d)
	}
	if d := b.Delay(0); d != time.Second {
		t.Fatalf("Delay(0) = %v, want Min", d)
	}
	if d := (&Backoff{}).Next(); d != 0 {
		t.Fatalf("zero Backoff waits %v", d)
	}
	// Far beyond the cap the doubling stops at Max instead of overflowing.
	if d := (&Backoff{Min: time.Second, Max: time.Hour, Jitter: None}).Delay(1000); d != time.Hour {
		t.Fatalf("Delay(1000) = %v", d)
	}
}
