package ring

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kvscamd/kvscamd/internal/testdirs"
)

// fill writes a file into dir until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !isNoSpace(err) {
				t.Fatal(err)
			}
			return
		}
	}
}

func TestDiskFull(t *testing.T) {
	mnt := testdirs.Small(t, "4m", "fills the ring")
	dir := filepath.Join(mnt, "cam-0001")
	o := Options{Capacity: 64 << 20, SegmentSize: 128 << 10} // far more than the filesystem holds
	r := mustOpen(t, dir, o)
	t.Cleanup(func() { r.Close() }) // before the unmount
	stored := map[ID]int64{}
	seed := int64(0)
	appendOne := func() (ID, error) {
		seed++
		f := genFragment(seed, 20_000)
		id, err := r.Append(&f)
		if err == nil {
			stored[id] = seed
		}
		return id, err
	}
	// Acknowledged history first: when the disk fills up, it makes room.
	for i := 0; i < 20; i++ {
		id, err := appendOne()
		if err != nil {
			t.Fatal(err)
		}
		r.Ack(id)
	}
	fill(t, filepath.Join(mnt, "filler"))
	for i := 0; i < 15; i++ {
		if _, err := appendOne(); err != nil {
			t.Fatalf("append %d with acknowledged history to give up: %v", i, err)
		}
	}
	if r.Stats().EvictedAcked == 0 {
		t.Fatal("no acknowledged history was given up for space")
	}
	// Now only unacknowledged video is left. Newer video still wins: the
	// oldest unacknowledged fragments are evicted for it, and counted.
	for i := 0; i < 200; i++ {
		if _, err := appendOne(); err != nil {
			t.Fatalf("append %d on a filesystem full of unacknowledged video: %v", i, err)
		}
	}
	if st := r.Stats(); st.Lost == 0 || st.EffectiveCapacity >= o.Capacity || st.CorruptSkipped != 0 {
		t.Fatalf("after 200 appends on a full filesystem: stats %+v", st)
	}
	// Space returns: the ring grows again.
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	before := r.Stats().Lost
	for i := 0; i < 40; i++ {
		if _, err := appendOne(); err != nil {
			t.Fatalf("append after space came back: %v", err)
		}
	}
	if st := r.Stats(); st.Lost != before || st.Fragments < 40 {
		t.Fatalf("after space came back the ring should grow without evicting: stats %+v (lost before %d)", st, before)
	}
	lost := r.Stats().Lost
	r.Close()
	r = mustOpen(t, dir, o)
	defer r.Close()
	ids, fs := collect(t, r)
	got := map[ID]bool{}
	for i, id := range ids {
		g := genFragment(stored[id], 20_000)
		if !sameFragment(&fs[i], &g) {
			t.Fatalf("id %d differs after the disk-full episode", id)
		}
		got[id] = true
	}
	// What is missing is exactly the oldest unacknowledged video, and the
	// counter says how much.
	missing, newestMissing := uint64(0), int64(0)
	for id, s := range stored {
		if !got[id] && s > 20 { // the first 20 were acknowledged and may go
			missing++
			newestMissing = max(newestMissing, s)
		}
	}
	for id, s := range stored {
		if s > 20 && s < newestMissing && got[id] {
			t.Fatalf("id %d kept while the newer %d was evicted: not oldest first", id, newestMissing)
		}
	}
	if missing != lost {
		t.Fatalf("%d unacknowledged fragments missing, %d counted as lost", missing, lost)
	}
}
