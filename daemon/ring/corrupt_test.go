package ring

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

const corruptN = 40

func corruptSize(seed int64) int { return sizeFor(seed, 2_000, 20_000) }

// buildRing fills a fresh ring with corruptN fragments spread over several
// segments, closes it and returns the records' locations.
func buildRing(t *testing.T, dir string, o Options) []entry {
	t.Helper()
	r := mustOpen(t, dir, o)
	// At least corruptN, and until the active segment holds four records
	// so that there is a middle to damage there too.
	for i := int64(0); ; i++ {
		f := genFragment(i, corruptSize(i))
		mustAppend(t, r, &f)
		r.mu.Lock()
		act := r.activeLocked()
		r.mu.Unlock()
		if i >= corruptN-1 && act != nil && act.count >= 4 {
			break
		}
	}
	r.mu.Lock()
	es := append([]entry(nil), r.entries...)
	r.mu.Unlock()
	r.Close()
	// Close indexes the active segment; a crash would not have. Recover
	// from the state a crash leaves.
	if err := os.Remove(es[len(es)-1].seg.idxPath); err != nil {
		t.Fatal(err)
	}
	return es
}

// checkAll reopens the ring and verifies that every fragment it returns is
// the original one for its id, that no id is returned twice and that
// appends continue after the highest id ever stored. It returns the ids
// returned and the ring's stats after reading everything.
func checkAll(t *testing.T, dir string, o Options) (map[ID]bool, Stats) {
	t.Helper()
	r := mustOpen(t, dir, o)
	defer r.Close()
	ids, fs := collect(t, r)
	got := map[ID]bool{}
	for i, id := range ids {
		seed := seedOf(&fs[i])
		g := genFragment(seed, corruptSize(seed))
		if seed == 1000 { // appended by an earlier checkAll
			g = genFragment(seed, 100)
			seed = int64(id) - 1
		}
		if got[id] || id != ID(seed+1) || !sameFragment(&fs[i], &g) {
			t.Fatalf("id %d: returned twice or not the fragment stored under it (seed %d)", id, seed)
		}
		got[id] = true
	}
	st := r.Stats()
	f := genFragment(1000, 100)
	if id := mustAppend(t, r, &f); got[id] {
		t.Fatalf("append after recovery reused id %d", id)
	}
	return got, st
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	patch(t, path, off, []byte{b[off] ^ 0x5a})
}

func TestRecoveryFromDamage(t *testing.T) {
	o := Options{Capacity: 8 << 20, SegmentSize: 128 << 10}
	lastOf := func(es []entry) entry { return es[len(es)-1] }
	// sealedMiddle returns a record in the middle of a sealed segment.
	sealedMiddle := func(t *testing.T, es []entry) entry {
		for i := 1; i+1 < len(es); i++ {
			if es[i-1].seg == es[i].seg && es[i+1].seg == es[i].seg && es[i].seg != lastOf(es).seg {
				return es[i]
			}
		}
		t.Fatal("no record in the middle of a sealed segment")
		return entry{}
	}
	activeMiddle := func(t *testing.T, es []entry) entry {
		a := lastOf(es).seg
		for i := len(es) - 2; i > 0; i-- {
			if es[i].seg == a && es[i-1].seg == a {
				return es[i]
			}
		}
		t.Fatal("no record in the middle of the active segment")
		return entry{}
	}
	cases := []struct {
		name    string
		damage  func(t *testing.T, dir string, es []entry) ID // returns the id that must be missing, or 0
		corrupt uint64                                        // CorruptSkipped after reading all
		torn    uint64
	}{
		{"tail cut inside the last record", func(t *testing.T, dir string, es []entry) ID {
			e := lastOf(es)
			if err := os.Truncate(e.seg.path, e.off+recHeaderSize+int64(e.plen)/2); err != nil {
				t.Fatal(err)
			}
			return e.id
		}, 0, 0},
		{"torn tail: last payload not written", func(t *testing.T, dir string, es []entry) ID {
			e := lastOf(es)
			patch(t, e.seg.path, e.off+recHeaderSize+100, make([]byte, 1000))
			return e.id
		}, 0, 1},
		{"torn tail: last header half written", func(t *testing.T, dir string, es []entry) ID {
			e := lastOf(es)
			patch(t, e.seg.path, e.off+20, make([]byte, 28))
			return e.id
		}, 0, 0},
		{"payload bit flip in a sealed segment", func(t *testing.T, dir string, es []entry) ID {
			e := sealedMiddle(t, es)
			flip(t, e.seg.path, e.off+recHeaderSize+int64(e.plen)/3)
			return e.id
		}, 1, 0},
		{"header bit flip in a sealed segment (index intact)", func(t *testing.T, dir string, es []entry) ID {
			e := sealedMiddle(t, es)
			flip(t, e.seg.path, e.off+10)
			return e.id
		}, 1, 0},
		{"header bit flip in a sealed segment without index", func(t *testing.T, dir string, es []entry) ID {
			e := sealedMiddle(t, es)
			flip(t, e.seg.path, e.off+10)
			os.Remove(e.seg.idxPath)
			return e.id
		}, 1, 0},
		{"header bit flip in the active segment", func(t *testing.T, dir string, es []entry) ID {
			e := activeMiddle(t, es)
			flip(t, e.seg.path, e.off+2)
			return e.id
		}, 1, 0},
		{"payload bit flip in the active segment", func(t *testing.T, dir string, es []entry) ID {
			e := activeMiddle(t, es)
			flip(t, e.seg.path, e.off+recHeaderSize+5)
			return e.id
		}, 1, 0},
		{"torn tail after an index written at Close", func(t *testing.T, dir string, es []entry) ID {
			// A clean stop indexed records up to the second-to-last; the
			// last was appended after the restart and torn by a crash.
			e := lastOf(es)
			n := 0
			for _, x := range es {
				if x.seg == e.seg && x.id != e.id {
					n++
				}
			}
			if err := os.WriteFile(e.seg.idxPath, marshalIndex(e.seg.seq, e.off, es[len(es)-1-n:len(es)-1]), 0o640); err != nil {
				t.Fatal(err)
			}
			patch(t, e.seg.path, e.off+recHeaderSize+100, make([]byte, 1000))
			return e.id
		}, 0, 1},
		{"index files garbage", func(t *testing.T, dir string, es []entry) ID {
			for i, p := range segFiles(t, dir, ".idx") {
				os.WriteFile(p, bytes.Repeat([]byte{byte(i + 1)}, 100+i*40), 0o640)
			}
			return 0
		}, 0, 0},
		{"index files truncated", func(t *testing.T, dir string, es []entry) ID {
			for _, p := range segFiles(t, dir, ".idx") {
				fi, _ := os.Stat(p)
				os.Truncate(p, fi.Size()-7)
			}
			return 0
		}, 0, 0},
		{"index of another segment", func(t *testing.T, dir string, es []entry) ID {
			idx := segFiles(t, dir, ".idx")
			b, _ := os.ReadFile(idx[1])
			os.WriteFile(idx[0], b, 0o640)
			return 0
		}, 0, 0},
		{"segment header damaged", func(t *testing.T, dir string, es []entry) ID {
			flip(t, es[0].seg.path, 3)
			flip(t, lastOf(es).seg.path, 20)
			return 0
		}, 0, 0},
		{"empty and zero segments from interrupted creation", func(t *testing.T, dir string, es []entry) ID {
			os.WriteFile(filepath.Join(dir, "00000000000000ff.seg"), nil, 0o640)
			os.WriteFile(filepath.Join(dir, "0000000000000100.seg"), make([]byte, 64<<10), 0o640)
			return 0
		}, 0, 0},
		{"foreign files", func(t *testing.T, dir string, es []entry) ID {
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o640)
			os.WriteFile(filepath.Join(dir, "zz.seg"), []byte("KVSRSEG1"), 0o640)
			return 0
		}, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			es := buildRing(t, dir, o)
			missing := c.damage(t, dir, es)
			got, st := checkAll(t, dir, o)
			want := len(es)
			if missing != 0 {
				want--
				if got[missing] {
					t.Fatalf("damaged id %d was returned", missing)
				}
			}
			if len(got) != want {
				t.Fatalf("%d fragments returned, want %d", len(got), want)
			}
			if st.CorruptSkipped != c.corrupt || st.TornTails != c.torn {
				t.Fatalf("corrupt %d torn %d, want %d and %d", st.CorruptSkipped, st.TornTails, c.corrupt, c.torn)
			}
			// A second recovery of the repaired ring finds the same.
			got2, st2 := checkAll(t, dir, o)
			if len(got2) != want+1 {
				t.Fatalf("second recovery: %d fragments, want %d", len(got2), want+1)
			}
			// Damage is reported once, not at every start.
			if st2.CorruptSkipped != 0 || st2.Lost != 0 {
				t.Fatalf("second recovery reported damage again: corrupt %d, lost %d", st2.CorruptSkipped, st2.Lost)
			}
		})
	}
}

func TestAckLogDamage(t *testing.T) {
	dir := t.TempDir()
	o := Options{Capacity: 4 << 20}
	r := mustOpen(t, dir, o)
	for i := int64(0); i < 10; i++ {
		f := genFragment(i, 1000)
		id := mustAppend(t, r, &f)
		if err := r.Ack(id); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	flip(t, filepath.Join(dir, ackLogName), 4*ackSlotSize+9) // the ack of id 4, after the identity slot
	r = mustOpen(t, dir, o)
	defer r.Close()
	if id, ok := r.FirstUnacked(); !ok || id != 4 {
		t.Fatalf("FirstUnacked = %d,%v; want only id 4 to lose its ack", id, ok)
	}
	if st := r.Stats(); st.Unacked != 1 {
		t.Fatalf("%d unacked, want 1", st.Unacked)
	}
}

// TestRandomDamage overwrites random byte ranges of random files and checks
// that recovery never returns anything but original fragments.
func TestRandomDamage(t *testing.T) {
	o := Options{Capacity: 8 << 20, SegmentSize: 128 << 10}
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	for round := range rounds {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		dir := t.TempDir()
		buildRing(t, dir, o)
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		sort.Strings(names)
		for k := 0; k < 1+rng.IntN(6); k++ {
			p := names[rng.IntN(len(names))]
			fi, err := os.Stat(p)
			if err != nil || fi.Size() == 0 {
				continue
			}
			junk := make([]byte, 1+rng.IntN(200))
			for i := range junk {
				junk[i] = byte(rng.Uint32())
			}
			if rng.IntN(3) == 0 {
				clear(junk)
			}
			patch(t, p, rng.Int64N(fi.Size()), junk)
		}
		got, _ := checkAll(t, dir, o) // verifies every returned fragment
		if len(got) == 0 {
			t.Fatalf("round %d: nothing recovered", round)
		}
	}
}
