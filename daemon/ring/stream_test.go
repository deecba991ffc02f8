package ring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// readStream reads the fragment at from through NextStream and returns it
// with its whole cluster, and how many cluster bytes came from the body.
func readStream(t *testing.T, r *Ring, from ID) (ID, fragmenter.Fragment, int) {
	t.Helper()
	id, f, body, err := r.NextStream(context.Background(), from)
	if err != nil {
		t.Fatalf("NextStream(%d): %v", from, err)
	}
	defer body.Close()
	n := body.Len()
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("NextStream(%d): body: %v", from, err)
	}
	if int64(len(rest)) != n {
		t.Fatalf("NextStream(%d): body gave %d bytes, Len said %d", from, len(rest), n)
	}
	whole := f
	whole.Header = bytes.Clone(f.Header)
	whole.Cluster = append(bytes.Clone(f.Cluster), rest...)
	return id, whole, len(rest)
}

func TestNextStreamRoundTrip(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 64 << 20})
	defer r.Close()
	sizes := []int{100, streamHead - 400, streamHead, streamHead + 1, 300_000, 1_500_000}
	for i, size := range sizes {
		f := genFragment(int64(i), size)
		mustAppend(t, r, &f)
	}
	for i, size := range sizes {
		id, got, streamed := readStream(t, r, ID(i+1))
		want := genFragment(int64(i), size)
		if id != ID(i+1) || !sameFragment(&got, &want) {
			t.Fatalf("size %d: id %d, fragment differs from the one appended", size, id)
		}
		if size > streamHead && streamed == 0 {
			t.Errorf("size %d: nothing streamed; the whole cluster was held in memory", size)
		}
	}
}

// TestNextStreamMemory: a reader that closes each body reads megabyte
// fragments in a head buffer's worth of memory, not a fragment's.
func TestNextStreamMemory(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 64 << 20})
	defer r.Close()
	const n, size = 12, 1_000_000
	for i := int64(0); i < n; i++ {
		f := genFragment(i, size)
		mustAppend(t, r, &f)
	}
	chunk := make([]byte, 32<<10)
	read := func(from ID) {
		id, f, body, err := r.NextStream(context.Background(), from)
		if err != nil || id != from {
			t.Fatalf("NextStream(%d) = %d, %v", from, id, err)
		}
		if seedOf(&f) != int64(from-1) {
			t.Fatalf("fragment %d read back as seed %d", from, seedOf(&f))
		}
		for {
			if _, err := body.Read(chunk); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		body.Close()
	}
	read(1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for id := ID(2); id <= n; id++ {
		read(id)
	}
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(streamHead); got > limit {
		t.Errorf("%d streamed reads of %d-byte fragments allocated %d bytes, want under %d", n-1, size, got, limit)
	}
}

// TestNextStreamSkipsDamage: a flipped byte deep in the cluster, past the
// head, is found before anything is handed out.
func TestNextStreamSkipsDamage(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 64 << 20})
	defer r.Close()
	const size = 400_000
	for i := int64(0); i < 3; i++ {
		f := genFragment(i, size)
		mustAppend(t, r, &f)
	}
	victim := genFragment(1, size)
	flipInSegments(t, dir, victim.Cluster[300_000:300_032])
	id, got, _ := readStream(t, r, 2)
	want := genFragment(2, size)
	if id != 3 || !sameFragment(&got, &want) {
		t.Fatalf("NextStream(2) = %d; want the damaged 2 skipped and 3 intact", id)
	}
	if st := r.Stats(); st.CorruptSkipped != 1 {
		t.Fatalf("CorruptSkipped = %d, want 1", st.CorruptSkipped)
	}
}

// flipInSegments flips a bit inside the one place pattern occurs in the
// ring's segment files.
func flipInSegments(t *testing.T, dir string, pattern []byte) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, pattern); i >= 0 {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{b[i+7] ^ 0x10}, int64(i+7)); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("pattern not found in any segment")
}

// TestBodyAfterEviction: a body whose record is evicted while it is being
// read stops with ErrEvicted rather than handing out what eviction left,
// and holds nothing that keeps the evicted segment open.
func TestBodyAfterEviction(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 2 << 20})
	defer r.Close()
	const size = 300_000
	f := genFragment(0, size)
	mustAppend(t, r, &f)
	_, _, body, err := r.NextStream(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	chunk := make([]byte, 4096)
	if _, err := body.Read(chunk); err != nil {
		t.Fatalf("first read: %v", err)
	}
	for i := int64(1); r.find(1) >= 0; i++ {
		if i > 100 {
			t.Fatal("fragment 1 never evicted")
		}
		f := genFragment(i, size)
		mustAppend(t, r, &f)
	}
	if _, err := io.ReadAll(body); !errors.Is(err, ErrEvicted) {
		t.Fatalf("read after eviction: %v, want ErrEvicted", err)
	}
	if st := r.Stats(); st.Lost == 0 {
		t.Fatalf("Lost = 0; the test meant to evict unacknowledged video")
	}
}

// TestNextStreamLargeHeader: a stream header that leaves no room for the
// cluster in the head buffer is read whole, as Next reads it.
func TestNextStreamLargeHeader(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 64 << 20})
	defer r.Close()
	f := genFragment(0, 200_000)
	f.Header = bytes.Repeat([]byte{0xA5}, fragmenter.MaxHeaderSize)
	mustAppend(t, r, &f)
	id, got, streamed := readStream(t, r, 1)
	if id != 1 || !sameFragment(&got, &f) || streamed != 0 {
		t.Fatalf("id %d, same %v, streamed %d; want the whole record in memory", id, sameFragment(&got, &f), streamed)
	}
}
