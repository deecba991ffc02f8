package ring

import (
	"path/filepath"
	"testing"

	"github.com/kvscamd/kvscamd/internal/testdirs"
)

// TestRingLargerThanFilesystem is the default ring_size on a small
// filesystem: a 1 GiB ring on a 32 MiB tmpfs must store video, keep the
// newest, and give up acknowledged video before unacknowledged.
func TestRingLargerThanFilesystem(t *testing.T) {
	mnt := testdirs.Small(t, "32m", "measures free space")
	dir := filepath.Join(mnt, "cam-0001")
	sp, err := SpaceOf(dir)
	if err != nil || sp.Held != 0 || sp.Free <= 0 || sp.Free > 32<<20 || sp.Total != 32<<20 {
		t.Fatalf("SpaceOf a missing ring directory on a 32 MiB tmpfs: %+v, %v", sp, err)
	}
	o := Options{Capacity: 1 << 30}
	r := mustOpen(t, dir, o)
	t.Cleanup(func() { r.Close() })
	const size = 200 << 10
	seeds := map[ID]int64{}
	acked := map[ID]bool{}
	var last ID
	for seed := int64(0); seed < 400; seed++ { // 80 MB through a 32 MiB filesystem
		f := genFragment(seed, size)
		id, err := r.Append(&f)
		if err != nil {
			t.Fatalf("append %d: %v (stats %+v)", seed, err, r.Stats())
		}
		seeds[id], last = seed, id
		// Two of three uploaded: those are what goes first.
		if seed%3 != 0 {
			if err := r.Ack(id); err != nil {
				t.Fatal(err)
			}
			acked[id] = true
		}
	}
	st := r.Stats()
	if st.EffectiveCapacity >= 32<<20 || st.EffectiveCapacity < 24<<20 {
		t.Fatalf("effective capacity %d on a 32 MiB filesystem", st.EffectiveCapacity)
	}
	if st.BytesUsed > st.EffectiveCapacity {
		t.Fatalf("uses %d bytes, more than the effective capacity %d", st.BytesUsed, st.EffectiveCapacity)
	}
	ids, fs := collect(t, r)
	if len(ids) == 0 || ids[len(ids)-1] != last {
		t.Fatalf("the newest fragment is not stored (%d stored)", len(ids))
	}
	kept := map[ID]bool{}
	unackedKept := 0
	for i, id := range ids {
		g := genFragment(seeds[id], size)
		if !sameFragment(&fs[i], &g) {
			t.Fatalf("id %d differs", id)
		}
		kept[id] = true
		if !acked[id] {
			unackedKept++
		}
	}
	// Unacknowledged video outlives acknowledged video: the ring holds
	// ~140 fragments, so it can keep far more than a third of them
	// unacknowledged, all the newest ones.
	missingUnacked := uint64(0)
	for id := range seeds {
		if !acked[id] && !kept[id] {
			missingUnacked++
		}
	}
	if missingUnacked != st.Lost {
		t.Fatalf("%d unacknowledged fragments missing, %d counted as lost", missingUnacked, st.Lost)
	}
	if unackedKept < 100 || st.EvictedAcked == 0 {
		t.Fatalf("only %d unacknowledged fragments kept (%d stored), %d acknowledged evicted", unackedKept, len(ids), st.EvictedAcked)
	}
	t.Logf("stored %d (%d unacknowledged), lost %d, evicted acknowledged %d, effective capacity %d, used %d",
		len(ids), unackedKept, st.Lost, st.EvictedAcked, st.EffectiveCapacity, st.BytesUsed)
	r.Close()
	// Reopen: the ring fits, nothing is evicted at Open.
	r = mustOpen(t, dir, o)
	if st2 := r.Stats(); st2.Fragments != len(ids) || st2.Lost != 0 || st2.CorruptSkipped != 0 {
		t.Fatalf("reopen: %+v, want %d fragments", st2, len(ids))
	}
	if sp, err := SpaceOf(dir); err != nil || sp.Held == 0 || sp.Room() >= 32<<20 || sp.Room() < 24<<20 {
		t.Fatalf("SpaceOf the full ring: %+v, %v", sp, err)
	}
}
