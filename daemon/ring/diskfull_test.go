package ring

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "3m") for the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs to fill a real filesystem and needs root (CI runs the tests as root)")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (needs CAP_SYS_ADMIN and util-linux mount): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

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
	mnt := mountTmpfs(t, "4m")
	dir := filepath.Join(mnt, "cam-0001")
	o := Options{Capacity: 64 << 20, SegmentSize: 128 << 10} // far more than the filesystem holds
	r := mustOpen(t, dir, o)
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
	// Now only unacknowledged video is left: appends fail, clearly, and
	// nothing stored is touched.
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		_, err = appendOne()
	}
	if err == nil {
		t.Fatal("appends kept succeeding on a full filesystem")
	}
	if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "free space") || !isNoSpace(err) {
		t.Fatalf("error does not name the directory, the cause and the fix: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := appendOne(); err == nil {
			t.Fatal("append succeeded although nothing changed")
		}
	}
	// Space returns: capture resumes.
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := appendOne(); err != nil {
			t.Fatalf("append after space came back: %v", err)
		}
	}
	if st := r.Stats(); st.AppendErrors == 0 || st.Lost != 0 || st.CorruptSkipped != 0 {
		t.Fatalf("stats %+v", st)
	}
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
	for id, s := range stored {
		if !got[id] && s > 20 { // the first 20 were acknowledged and may go
			t.Fatalf("id %d (unacknowledged) missing after the disk-full episode", id)
		}
	}
}
