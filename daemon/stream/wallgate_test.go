package stream

import (
	"context"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
)

// fragmentAt is a minimal fragment the ring and Rebase accept.
func fragmentAt(tc int64, unknown bool, boot fragmenter.BootID) *fragmenter.Fragment {
	cluster := append([]byte{0x1f, 0x43, 0xb6, 0x75, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe7, 0x88}, make([]byte, 8)...)
	fr := &fragmenter.Fragment{Timecode: tc, Duration: time.Second, Frames: 30, Header: []byte("h"), Cluster: cluster,
		Mono: time.Duration(tc) * time.Millisecond, WallUnknown: unknown, Boot: boot}
	if unknown {
		return fr
	}
	fr.Mono = 0
	return fr
}

func TestWallGate(t *testing.T) {
	r, err := ring.Open(t.TempDir(), ring.Options{Capacity: 8 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	earlier := fragmenter.BootID{1}
	this := fragmenter.BootID{2}
	// An earlier boot's fragments without wall time, then this boot's,
	// then (after sync) this boot's with wall time.
	for _, f := range []*fragmenter.Fragment{
		fragmentAt(5_000, true, earlier), fragmentAt(6_000, true, earlier),
		fragmentAt(10_000, true, this), fragmentAt(11_000, true, this),
	} {
		if _, err := r.Append(f); err != nil {
			t.Fatal(err)
		}
	}
	g := newWallGate(r, this, quiet())
	// Before the offset is known, nothing is ready and Next waits.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	if id, _, err := g.Next(ctx, 1); err == nil {
		t.Fatalf("Next handed out fragment %d before the wall clock was known", id)
	}
	cancel()
	if id, ok := g.FirstUnacked(); !ok || id != 3 {
		t.Fatalf("FirstUnacked = %d, %v; want 3 (the earlier boot's are skipped once seen)", id, ok)
	}
	if next := g.NextID(); next != 3 {
		t.Fatalf("NextID = %d before sync, want 3: this boot's unplaced fragments are not ready", next)
	}
	if st := g.Stats(); !st.OldestUnacked.IsZero() {
		t.Fatalf("oldest unacked %v before sync, want none", st.OldestUnacked)
	}
	boot := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	if _, err := r.Append(fragmentAt(boot+12_000, false, this)); err != nil {
		t.Fatal(err)
	}
	g.learn(boot)
	for want, tc := range map[ring.ID]int64{3: boot + 10_000, 4: boot + 11_000, 5: boot + 12_000} {
		id, f, err := g.Next(t.Context(), want)
		if err != nil || id != want || f.Timecode != tc || f.WallUnknown {
			t.Fatalf("Next(%d) = %d at %d (unknown %v), %v; want %d at %d", want, id, f.Timecode, f.WallUnknown, err, want, tc)
		}
	}
	var ids []ring.ID
	from := time.UnixMilli(boot + 10_500)
	if err := g.Range(from, time.Time{}, func(id ring.ID, f fragmenter.Fragment) error {
		if f.WallUnknown || f.Timecode < boot {
			t.Errorf("Range handed out %d at %d", id, f.Timecode)
		}
		ids = append(ids, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 {
		t.Fatalf("Range from %v: %v, want 5, 3 and 4 (ids 3..5)", from, ids)
	}
	if st := g.Stats(); !st.OldestUnacked.Equal(time.UnixMilli(boot + 10_000)) {
		t.Fatalf("oldest unacked %v, want this boot's first fragment placed", st.OldestUnacked)
	}
}
