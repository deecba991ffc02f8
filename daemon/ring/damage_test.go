package ring

import (
	"log/slog"
	"testing"
)

// damagedRing builds a ring of unacknowledged records, flips a payload bit
// in a record in the middle of the first (sealed) segment, and returns the
// options, that record and how many records the first segment holds.
func damagedRing(t *testing.T, dir string) (Options, entry, int) {
	t.Helper()
	o := Options{Capacity: 2 << 20, SegmentSize: 128 << 10}
	es := buildRing(t, dir, o)
	n := 0
	for _, e := range es {
		if e.seg.seq == es[0].seg.seq {
			n++
		}
	}
	bad := es[n/2]
	flip(t, bad.seg.path, bad.off+recHeaderSize+int64(bad.plen)/2)
	return o, bad, n
}

// TestDamageReportedOnce: a damaged record is reported at Warn level with
// its time range, once, and not again at the next start.
func TestDamageReportedOnce(t *testing.T) {
	dir := t.TempDir()
	o, bad, _ := damagedRing(t, dir)
	lc := &logCapture{}
	o.Logger = slog.New(lc)
	r := mustOpen(t, dir, o)
	ids, _ := collect(t, r)
	for _, id := range ids {
		if id == bad.id {
			t.Fatalf("damaged id %d handed out", id)
		}
	}
	if n := lc.count(slog.LevelWarn, "damaged record dropped"); n != 1 || lc.count(slog.LevelError, "") != 0 {
		t.Fatalf("%d warnings and %d errors for one damaged record; want 1 and 0", n, lc.count(slog.LevelError, ""))
	}
	if !lc.has(slog.LevelWarn, "damaged record dropped", "from", bad.start().String()) {
		t.Fatal("the report does not give the lost fragment's time range")
	}
	r.Close()
	for restart := 0; restart < 2; restart++ {
		lc2 := &logCapture{}
		o.Logger = slog.New(lc2)
		r = mustOpen(t, dir, o)
		ids2, _ := collect(t, r)
		if len(ids2) != len(ids) || r.Stats().CorruptSkipped != 0 || lc2.count(slog.LevelWarn, "damaged") != 0 {
			t.Fatalf("restart %d: %d records (want %d), damage reported again: %d", restart, len(ids2), len(ids), r.Stats().CorruptSkipped)
		}
		r.Close()
	}
}

// TestDamageNotCountedAsLost: damage nobody has read yet, found when its
// segment is evicted, is reported as damage, not as lost video.
func TestDamageNotCountedAsLost(t *testing.T) {
	dir := t.TempDir()
	o, bad, _ := damagedRing(t, dir)
	lc := &logCapture{}
	o.Logger = slog.New(lc)
	r := mustOpen(t, dir, o)
	defer r.Close()
	for seed := int64(5000); r.Stats().Lost == 0; seed++ {
		f := genFragment(seed, 20<<10)
		mustAppend(t, r, &f)
	}
	st := r.Stats()
	ids, _ := collect(t, r)
	// Ids run from 1 without gaps: everything below the oldest id left
	// was evicted, the damaged one included.
	gone := uint64(0)
	for _, id := range ids {
		if id > bad.id {
			gone = uint64(id) - 2
			break
		}
	}
	if st.CorruptSkipped != 1 || st.Lost != gone || len(ids) > 0 && ids[0] <= bad.id {
		t.Fatalf("evicting the segment with damaged id %d: lost %d, corrupt %d, oldest left %d; want %d lost (all evicted but the damaged one) and 1 corrupt", bad.id, st.Lost, st.CorruptSkipped, ids[0], gone)
	}
	if lc.count(slog.LevelWarn, "damaged record dropped") != 1 {
		t.Fatal("the damage was not reported")
	}
}
