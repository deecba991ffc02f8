package fragmenter

import (
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// TestWallUnknownThenKnown feeds frames without wall time (monotonic
// only), then with it: the fragments before the change are on the
// monotonic timeline and marked, those after are on the wall clock, and no
// fragment mixes the two.
func TestWallUnknownThenKnown(t *testing.T) {
	aus := accessUnits(t, testclips.Get("high-aud.h264").Read(t))
	frs := frames(aus, epoch, time.Second/30)
	const bootMono = 42 * time.Second
	switchAt := -1
	for k := range frs {
		frs[k].Mono = bootMono + time.Duration(k)*time.Second/30
		if k < 65 {
			frs[k].Time = time.Time{}
		} else if switchAt < 0 {
			switchAt = k
		}
	}
	f := New(Config{FragmentDuration: time.Second})
	frags := fragmentAll(f, frs)
	n := 0
	var unknown, known int
	for i, fr := range frags {
		if fr.WallUnknown {
			if known > 0 {
				t.Fatalf("fragment %d: wall unknown after known ones", i)
			}
			unknown++
			if want := (bootMono + time.Duration(n)*time.Second/30).Milliseconds(); fr.Timecode != want || fr.Mono.Milliseconds() != want {
				t.Fatalf("fragment %d: timecode %d mono %v, want %d", i, fr.Timecode, fr.Mono, want)
			}
		} else {
			known++
			if fr.Timecode < epoch.UnixMilli() {
				t.Fatalf("fragment %d: timecode %d not on the wall clock", i, fr.Timecode)
			}
		}
		n += fr.Frames
	}
	if unknown == 0 || known == 0 {
		t.Fatalf("%d fragments with unknown and %d with known wall time", unknown, known)
	}
	// Frames between the change and the next IDR cannot start a fragment.
	if got := int(f.Stats().Frames) + int(f.Stats().DroppedNoIDR); got != len(frs) {
		t.Fatalf("frames %d + dropped %d != %d", f.Stats().Frames, f.Stats().DroppedNoIDR, len(frs))
	}
	// Placed on the wall clock, the first part joins the second seamlessly.
	off := epoch.UnixMilli() - bootMono.Milliseconds()
	for i := range frags {
		if frags[i].WallUnknown {
			if err := frags[i].Rebase(frags[i].Timecode + off); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkvcheck.Check(t, writeMKV(t, frags), mkvcheck.Expect{Frames: int(f.Stats().Frames)})
}

// TestFloorAfterBackwardStep starts a fragmenter after a stored fragment
// ending 5 s after the new frames' clock (the clock was corrected back
// across a restart): every timecode is after the floor, frames stay at
// least 90 % of their interval apart, and the timeline is back on the
// clock after the slew has absorbed the 5 s.
func TestFloorAfterBackwardStep(t *testing.T) {
	aus := accessUnits(t, testclips.Get("high-aud.h264").Read(t))
	floor := epoch.Add(5 * time.Second).UnixMilli()
	var frs = frames(aus, epoch, time.Second/30)
	for len(frs) < 2000 { // about a minute: enough to absorb 5 s at 10 %
		more := frames(aus, frs[len(frs)-1].Time.Add(time.Second/30), time.Second/30)
		frs = append(frs, more...)
	}
	f := New(Config{})
	f.SetFloor(floor)
	var last int64 = floor
	var prevT int64
	for k, fr := range frs {
		fg, ok := f.Push(fr)
		if ok && fg.Timecode <= last {
			t.Fatalf("fragment at %d not after %d", fg.Timecode, last)
		}
		if ok {
			last = fg.Timecode
		}
		if k > 0 && f.last-prevT < 29 && f.frames > 1 {
			t.Fatalf("frame %d only %d ms after the previous one", k, f.last-prevT)
		}
		prevT = f.last
	}
	if want := frs[len(frs)-1].Time.UnixMilli(); f.last != want {
		t.Fatalf("after a minute the timeline is at %d, the clock at %d", f.last, want)
	}
}

func TestFragmentBinaryWallUnknown(t *testing.T) {
	boot, err := ParseBootID("ee65a6a4-d2b7-45b3-9705-3ed9547a77ca")
	if err != nil || boot.String() != "ee65a6a4-d2b7-45b3-9705-3ed9547a77ca" {
		t.Fatalf("boot id %v, %v", boot, err)
	}
	if _, err := ParseBootID("not-a-boot-id"); err == nil {
		t.Fatal("bad boot id accepted")
	}
	f := Fragment{Timecode: 12345, Duration: time.Second, Frames: 3, Header: []byte("hdr"),
		Cluster: appendClusterStart(nil, 12345), Mono: 12345678 * time.Microsecond, WallUnknown: true, Boot: boot}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Fragment
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !got.WallUnknown || got.Boot != boot || got.Mono != f.Mono || got.Timecode != 12345 || string(got.Header) != "hdr" {
		t.Fatalf("decoded %+v", got)
	}
	for cut := range len(b) {
		if got.UnmarshalBinary(b[:cut]) == nil {
			t.Fatalf("accepted %d of %d bytes", cut, len(b))
		}
	}
	// Known wall time: still the version 1 encoding earlier releases read.
	f.WallUnknown = false
	if b, _ := f.MarshalBinary(); b[4] != fragmentVersion || len(b) != fragmentFixed+len(f.Header)+len(f.Cluster) {
		t.Fatalf("version %d, %d bytes", b[4], len(b))
	}
	if err := got.Rebase(1_800_000_000_000); err != nil || got.WallUnknown || got.Timecode != 1_800_000_000_000 {
		t.Fatalf("rebase: %v %+v", err, got)
	}
	if string(got.Cluster) != string(appendClusterStart(nil, 1_800_000_000_000)) {
		t.Fatal("cluster timecode not rewritten")
	}
	if err := (&Fragment{Cluster: []byte{1, 2}}).Rebase(1); err == nil {
		t.Fatal("rebased a cluster without a timecode")
	}
}
