package ring

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/fragmenter"
)

func TestAppendNextRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Capacity: 8 << 20, SegmentSize: 256 << 10})
	defer r.Close()
	if r.NextID() != 1 {
		t.Fatalf("NextID of an empty ring = %d, want 1", r.NextID())
	}
	var want []ID
	for i := int64(0); i < 40; i++ {
		f := genFragment(i, sizeFor(i, 1000, 60_000))
		id := mustAppend(t, r, &f)
		if n := len(want); n > 0 && id <= want[n-1] {
			t.Fatalf("id %d after %d: not increasing", id, want[n-1])
		}
		want = append(want, id)
	}
	ctx := context.Background()
	from := ID(0)
	for i, wid := range want {
		id, f, err := r.Next(ctx, from)
		if err != nil {
			t.Fatal(err)
		}
		g := genFragment(int64(i), sizeFor(int64(i), 1000, 60_000))
		if id != wid || !sameFragment(&f, &g) {
			t.Fatalf("Next(%d) = id %d (want %d), same bytes %v", from, id, wid, sameFragment(&f, &g))
		}
		from = id + 1
	}
	if got := len(segFiles(t, dir, ".seg")); got < 3 {
		t.Fatalf("%d segment files, want several (segment size 256 KiB)", got)
	}
	st := r.Stats()
	if st.Fragments != 40 || st.Unacked != 40 || st.NextID != want[39]+1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRestartPreservesIDsAndAcks(t *testing.T) {
	dir := t.TempDir()
	o := Options{Capacity: 8 << 20, SegmentSize: 128 << 10}
	r := mustOpen(t, dir, o)
	var ids []ID
	for i := int64(0); i < 30; i++ {
		f := genFragment(i, 20_000)
		ids = append(ids, mustAppend(t, r, &f))
	}
	acked := map[ID]bool{}
	for _, k := range []int{0, 1, 2, 7, 5, 29, 12} { // out of order, with gaps
		if err := r.Ack(ids[k]); err != nil {
			t.Fatal(err)
		}
		acked[ids[k]] = true
	}
	if err := r.Ack(ids[5]); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := r.Ack(9999); err != nil { // unknown: no-op
		t.Fatal(err)
	}
	if id, ok := r.FirstUnacked(); !ok || id != ids[3] {
		t.Fatalf("FirstUnacked = %d,%v want %d", id, ok, ids[3])
	}
	next := r.NextID()
	r.Close()
	if _, err := r.Append(&fragmenterZero); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}

	r = mustOpen(t, dir, o)
	defer r.Close()
	if r.NextID() != next {
		t.Fatalf("NextID after restart %d, want %d", r.NextID(), next)
	}
	for i, id := range ids {
		if r.Acked(id) != acked[id] {
			t.Fatalf("Acked(%d) = %v after restart (index %d)", id, r.Acked(id), i)
		}
	}
	if r.Acked(9999) {
		t.Fatal("Acked of an unknown id")
	}
	if id, ok := r.FirstUnacked(); !ok || id != ids[3] {
		t.Fatalf("FirstUnacked after restart = %d,%v want %d", id, ok, ids[3])
	}
	if st := r.Stats(); st.Unacked != 30-len(acked) || st.Fragments != 30 {
		t.Fatalf("after restart: %d unacked of %d, want %d of 30", st.Unacked, st.Fragments, 30-len(acked))
	}
	f := genFragment(100, 1000)
	if id := mustAppend(t, r, &f); id != next {
		t.Fatalf("first id after restart %d, want %d", id, next)
	}
	// Acknowledge everything; FirstUnacked then reports none.
	for _, id := range append(ids, next) {
		if err := r.Ack(id); err != nil {
			t.Fatal(err)
		}
	}
	if id, ok := r.FirstUnacked(); ok {
		t.Fatalf("FirstUnacked = %d after acking all", id)
	}
}

func TestAckLogCheckpoint(t *testing.T) {
	dir := t.TempDir()
	o := Options{Capacity: 8 << 20, SegmentSize: 256 << 10, AckLogSize: 4096} // 128 slots
	r := mustOpen(t, dir, o)
	var ids []ID
	for i := int64(0); i < 400; i++ {
		f := genFragment(i, 100)
		ids = append(ids, mustAppend(t, r, &f))
	}
	// Ack all but every tenth, so the checkpoint needs ranges.
	for i, id := range ids {
		if i%10 != 3 {
			if err := r.Ack(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.Close()
	r = mustOpen(t, dir, o)
	defer r.Close()
	r.mu.Lock()
	for i, e := range r.entries {
		if want := i%10 != 3; e.acked != want {
			t.Fatalf("id %d acked=%v after checkpoints and restart, want %v", e.id, e.acked, want)
		}
	}
	r.mu.Unlock()
}

var fragmenterZero = genFragment(0, 10)

func TestNextBlocksWakesAndCancels(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 4 << 20})
	type res struct {
		id  ID
		err error
	}
	got := make(chan res, 1)
	go func() {
		id, _, err := r.Next(context.Background(), 1)
		got <- res{id, err}
	}()
	select {
	case x := <-got:
		t.Fatalf("Next returned %v on an empty ring", x)
	default:
	}
	f := genFragment(1, 500)
	id := mustAppend(t, r, &f)
	if x := <-got; x.err != nil || x.id != id {
		t.Fatalf("Next woke with %v, want id %d", x, id)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		id, _, err := r.Next(ctx, id+1)
		got <- res{id, err}
	}()
	cancel()
	if x := <-got; !errors.Is(x.err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", x)
	}

	go func() {
		id, _, err := r.Next(context.Background(), id+1)
		got <- res{id, err}
	}()
	r.Close()
	if x := <-got; !errors.Is(x.err, ErrClosed) {
		t.Fatalf("Next after Close: %v", x)
	}
}

func TestRange(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{Capacity: 4 << 20, SegmentSize: 64 << 10})
	defer r.Close()
	for i := int64(0); i < 20; i++ {
		f := genFragment(i, 5000)
		mustAppend(t, r, &f)
	}
	at := func(seed int64) time.Time { return time.UnixMilli(baseTC + seed*fragSpacing) }
	cases := []struct {
		name     string
		from, to time.Time
		first    int64
		n        int
	}{
		{"all", time.Time{}, time.Time{}, 0, 20},
		{"exact", at(3), at(7), 3, 4},
		{"mid fragment start", at(3).Add(time.Second), at(7), 3, 4},
		{"to mid fragment", at(3), at(7).Add(time.Millisecond), 3, 5},
		{"open start", time.Time{}, at(2), 0, 2},
		{"open end", at(18), time.Time{}, 18, 2},
		{"before", at(-10), at(-5), 0, 0},
		{"after", at(30), time.Time{}, 0, 0},
	}
	for _, c := range cases {
		var seeds []int64
		err := r.Range(c.from, c.to, func(_ ID, f fragmenter.Fragment) error {
			seeds = append(seeds, seedOf(&f))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seeds) != c.n || (c.n > 0 && seeds[0] != c.first) {
			t.Errorf("%s: got seeds %v, want %d from %d", c.name, seeds, c.n, c.first)
		}
		for i := 1; i < len(seeds); i++ {
			if seeds[i] != seeds[i-1]+1 {
				t.Errorf("%s: seeds %v not consecutive", c.name, seeds)
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := r.Range(time.Time{}, time.Time{}, func(ID, fragmenter.Fragment) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Range with failing fn: err %v after %d calls", err, n)
	}
}

func TestTooLargeAndLimits(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{Capacity: 1000}); err == nil || !strings.Contains(err.Error(), "ring_size") {
		t.Fatalf("tiny capacity: %v", err)
	}
	r := mustOpen(t, dir, Options{Capacity: 1 << 20})
	defer r.Close()
	f := genFragment(1, 2<<20)
	if _, err := r.Append(&f); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "ring_size") {
		t.Fatalf("oversized fragment: %v", err)
	}
	// A fragment larger than a segment (64 KiB here) gets its own segment.
	big := genFragment(2, 300<<10)
	id := mustAppend(t, r, &big)
	_, got, err := r.Next(context.Background(), id)
	if err != nil || !sameFragment(&got, &big) {
		t.Fatalf("big fragment round trip: %v", err)
	}
	if _, err := Open(dir, Options{Capacity: 1 << 20}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open of a locked ring: %v", err)
	}
}
