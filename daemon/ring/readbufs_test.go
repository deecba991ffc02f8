package ring

import (
	"context"
	"runtime"
	"testing"
)

// A reader that recycles what it read allocates no record buffers; one
// that does not still gets fragments whose bytes nothing else overwrites.
func TestRecycleReusesReadBuffers(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 64 << 20})
	defer r.Close()
	const n, size = 12, 100_000
	for i := int64(0); i < n; i++ {
		f := genFragment(i, size)
		mustAppend(t, r, &f)
	}
	ctx := context.Background()

	// Kept, never recycled: stays intact through later reads and
	// recycles, and recycling it late is harmless.
	_, kept, err := r.Next(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := genFragment(0, size)

	var before, after runtime.MemStats
	var seeds [n + 1]int64
	read := func(from ID) {
		id, f, err := r.Next(ctx, from)
		if err != nil || id != from {
			t.Fatalf("Next(%d) = %d, %v", from, id, err)
		}
		seeds[from] = seedOf(&f)
		r.Recycle(f)
	}
	read(2) // warms the free list
	runtime.ReadMemStats(&before)
	for id := ID(3); id <= n; id++ {
		read(id)
	}
	runtime.ReadMemStats(&after)
	for id := ID(2); id <= n; id++ {
		if seeds[id] != int64(id-1) {
			t.Fatalf("fragment %d read back as seed %d", id, seeds[id])
		}
	}
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(size); got > limit {
		t.Errorf("%d recycled reads allocated %d bytes, want under one fragment (%d)", n-2, got, limit)
	}
	if !sameFragment(&kept, &want) {
		t.Error("a fragment that was not recycled was overwritten by later reads")
	}
	r.Recycle(kept)
	read(5)
	if !sameFragment(&kept, &want) {
		t.Error("recycling a buffer no longer lent handed it out again")
	}
}
