package fragmenter

import (
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/testclips"
)

// OpenReached says when the open fragment, flushed, would be long
// enough: not before the frame that brings it to the duration (less half
// a frame), and exactly when Flush would return that long a fragment.
func TestOpenReached(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264") // a key frame every 30 frames
	aus := accessUnits(t, clip.Read(t))
	const interval = 40 * time.Millisecond
	frs := frames(aus, epoch, interval)
	f := New(Config{FragmentDuration: 10 * time.Second})
	if f.OpenReached(0) {
		t.Fatal("reached with no fragment open")
	}
	want := 600 * time.Millisecond
	for k, fr := range frs[:29] {
		f.Push(fr)
		// After k+1 frames a flush would last (k+1) intervals.
		got, should := f.OpenReached(want), time.Duration(k+1)*interval+interval/2 >= want
		if got != should {
			t.Fatalf("after %d frames: reached %v, want %v", k+1, got, should)
		}
	}
	frag, ok := f.Flush()
	if !ok || frag.Duration != 29*interval {
		t.Fatalf("flushed %v (%v), want %v", frag.Duration, ok, 29*interval)
	}
	if f.OpenReached(0) {
		t.Fatal("reached after the flush")
	}
}
