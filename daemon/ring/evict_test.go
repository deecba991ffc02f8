package ring

import (
	"log/slog"
	"testing"
	"time"
)

// checkCapacity fails when the ring's files occupy more than its capacity,
// as the filesystem counts them and as the ring accounts them.
func checkCapacity(t *testing.T, r *Ring, dir string) {
	t.Helper()
	if du, st := diskUsage(t, dir), r.Stats(); du > r.opts.Capacity || st.BytesUsed > r.opts.Capacity {
		t.Fatalf("ring occupies %d bytes on disk (accounted %d), capacity %d", du, st.BytesUsed, r.opts.Capacity)
	}
}

func TestEvictionAckedFirst(t *testing.T) {
	dir := t.TempDir()
	logs := &logCapture{}
	r := mustOpen(t, dir, Options{Capacity: 2 << 20, SegmentSize: 64 << 10, Logger: slog.New(logs)})
	defer r.Close()
	unacked := map[ID]int64{}
	// Phase 1: 2.5 times the capacity; one fragment in twenty stays
	// unacknowledged, so every segment ends up partly acknowledged and
	// only hole punching can free space without losing video. (Punching
	// frees whole blocks only, so a 10 KB record left behind keeps up to
	// 40 KiB of its segment allocated; one in twenty fits that overhead.)
	for i := int64(0); i < 500; i++ {
		f := genFragment(i, 10_000)
		id := mustAppend(t, r, &f)
		if i%20 == 0 {
			unacked[id] = i
		} else if err := r.Ack(id); err != nil {
			t.Fatal(err)
		}
		checkCapacity(t, r, dir)
	}
	st := r.Stats()
	if st.Lost != 0 || st.EvictedAcked == 0 {
		t.Fatalf("phase 1: lost %d, evicted acked %d; want no loss while acknowledged fragments remain", st.Lost, st.EvictedAcked)
	}
	ids, fs := collect(t, r)
	have := map[ID]bool{}
	for i, id := range ids {
		have[id] = true
		g := genFragment(seedOf(&fs[i]), 10_000)
		if !sameFragment(&fs[i], &g) {
			t.Fatalf("id %d: bytes differ", id)
		}
	}
	for id := range unacked {
		if !have[id] {
			t.Fatalf("unacknowledged id %d was evicted while acknowledged ones were stored", id)
		}
	}

	// Phase 2: nothing is acknowledged any more; the ring overflows and the
	// oldest unacknowledged fragments go, loudly.
	first := r.NextID()
	for i := int64(500); i < 800; i++ {
		f := genFragment(i, 10_000)
		mustAppend(t, r, &f)
		checkCapacity(t, r, dir)
	}
	st = r.Stats()
	if st.Lost == 0 || logs.count(slog.LevelError, "DELETING") == 0 {
		t.Fatalf("phase 2: lost %d, %d error logs; want loss reported", st.Lost, logs.count(slog.LevelError, "DELETING"))
	}
	ids, _ = collect(t, r)
	// The fragments that survived are the newest: no gap among phase-2 ids.
	var p2 []ID
	for _, id := range ids {
		if id >= first {
			p2 = append(p2, id)
		}
	}
	for i := 1; i < len(p2); i++ {
		if p2[i] != p2[i-1]+1 {
			t.Fatalf("phase-2 ids have a gap at %d..%d: eviction did not take the oldest", p2[i-1], p2[i])
		}
	}
	if p2[len(p2)-1] != r.NextID()-1 {
		t.Fatalf("newest fragment %d missing", r.NextID()-1)
	}
	if uint64(len(unacked)+300-st.Unacked) != st.Lost {
		t.Fatalf("lost counter %d, but %d unacknowledged fragments are gone", st.Lost, len(unacked)+300-st.Unacked)
	}
}

func TestEvictionWholeSegmentsOnly(t *testing.T) {
	// Without hole punching (as on filesystems that lack it), acknowledged
	// history still goes before unacknowledged video, by whole segments.
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 1 << 20, SegmentSize: 64 << 10})
	defer r.Close()
	r.canPunch = false
	var unacked []ID
	for i := int64(0); i < 300; i++ {
		f := genFragment(i, 8_000)
		id := mustAppend(t, r, &f)
		if i < 100 || i >= 280 {
			unacked = append(unacked, id)
		} else if err := r.Ack(id); err != nil {
			t.Fatal(err)
		}
		checkCapacity(t, r, dir)
	}
	// 280 x 8 KB overflow the 1 MiB ring; the acknowledged middle must be
	// what went, not the unacknowledged start.
	ids, _ := collect(t, r)
	have := map[ID]bool{}
	for _, id := range ids {
		have[id] = true
	}
	st := r.Stats()
	for _, id := range unacked[:100] {
		if !have[id] && st.EvictedAcked < 150 {
			t.Fatalf("unacknowledged %d evicted after only %d acknowledged ones", id, st.EvictedAcked)
		}
	}
	if st.Lost != 0 && st.EvictedAcked < 170 {
		t.Fatalf("lost %d with only %d acknowledged evicted", st.Lost, st.EvictedAcked)
	}
}

func TestEvictionLossNeverAcked(t *testing.T) {
	dir := t.TempDir()
	logs := &logCapture{}
	r := mustOpen(t, dir, Options{Capacity: 1 << 20, Logger: slog.New(logs)})
	for i := int64(0); i < 200; i++ {
		f := genFragment(i, sizeFor(i, 5_000, 30_000))
		mustAppend(t, r, &f)
		checkCapacity(t, r, dir)
	}
	ids, fs := collect(t, r)
	st := r.Stats()
	if st.Lost == 0 || int(st.Lost)+len(ids) != 200 {
		t.Fatalf("lost %d + stored %d != 200 appended", st.Lost, len(ids))
	}
	for i := range ids {
		if ids[i] != ID(200-len(ids)+i+1) {
			t.Fatalf("stored ids %v.. are not the newest %d", ids[:3], len(ids))
		}
		g := genFragment(seedOf(&fs[i]), sizeFor(seedOf(&fs[i]), 5_000, 30_000))
		if !sameFragment(&fs[i], &g) {
			t.Fatalf("id %d corrupt", ids[i])
		}
	}
	if logs.count(slog.LevelError, "DELETING") == 0 {
		t.Fatal("data loss was not logged at Error level")
	}
	r.Close()
}

func TestShrinkOnReopen(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 3 << 20, SegmentSize: 128 << 10})
	for i := int64(0); i < 100; i++ {
		f := genFragment(i, 25_000)
		mustAppend(t, r, &f)
	}
	r.Close()
	r = mustOpen(t, dir, Options{Capacity: 1 << 20, SegmentSize: 128 << 10})
	defer r.Close()
	checkCapacity(t, r, dir)
	if st := r.Stats(); st.Lost == 0 || st.Fragments == 0 || st.Fragments+int(st.Lost) != 100 {
		t.Fatalf("after shrinking: %d stored, %d lost", st.Fragments, st.Lost)
	}
}

func TestMaxAge(t *testing.T) {
	dir := t.TempDir()
	now := time.UnixMilli(baseTC + 60*fragSpacing) // "now" is seed 60
	r := mustOpen(t, dir, Options{
		Capacity: 8 << 20, SegmentSize: 64 << 10, MaxAge: time.Minute,
		Now: func() time.Time { return now },
	})
	defer r.Close()
	for i := int64(0); i < 60; i++ {
		f := genFragment(i, 10_000)
		id := mustAppend(t, r, &f)
		if i < 10 {
			r.Ack(id)
		}
	}
	// Fragments ending before seed 30 (one minute before "now") are
	// expired by whole sealed segments.
	ids, fs := collect(t, r)
	oldest := seedOf(&fs[0])
	if oldest < 20 || oldest > 30 {
		t.Fatalf("oldest stored seed %d, want between 20 and 30 (segment granularity)", oldest)
	}
	if len(ids) != int(60-oldest) {
		t.Fatalf("%d stored from seed %d: fragments younger than max age are missing", len(ids), oldest)
	}
	st := r.Stats()
	if st.Expired != uint64(oldest-10) || st.EvictedAcked != 10 || st.Lost != 0 {
		t.Fatalf("expired %d (want %d), evicted acked %d, lost %d", st.Expired, oldest-10, st.EvictedAcked, st.Lost)
	}
}
