package ring

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// fuzzSep separates the files packed into one fuzz input.
var fuzzSep = []byte("\xffKVSPLIT\xff")

// fuzzFiles are the files a fuzz input is unpacked into, in order.
var fuzzFiles = []string{"0000000000000001.seg", "0000000000000001.idx", "0000000000000002.seg", ackLogName}

// fuzzSeeds returns packed files of real rings: a sealed segment with its
// index, an active segment and an ack log, plus damaged variants.
func fuzzSeeds(tb testing.TB) [][]byte {
	dir := tb.TempDir()
	r := mustOpen(tb, dir, Options{Capacity: MinCapacity, SegmentSize: 64 << 10})
	for i := int64(0); i < 3; i++ {
		f := genFragment(i, 25_000+int(i)*1000)
		id := mustAppend(tb, r, &f)
		if i == 1 {
			r.Ack(id)
		}
	}
	r.Close()
	var parts [][]byte
	for _, name := range fuzzFiles {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		// Keep seeds small: the preallocated zeros add nothing.
		parts = append(parts, bytes.TrimRight(b, "\x00"))
	}
	good := bytes.Join(parts, fuzzSep)
	seeds := [][]byte{good, nil, []byte("KVSRSEG1"), bytes.Join([][]byte{parts[0], nil, parts[2]}, fuzzSep)}
	for _, off := range []int{5, 40, 80, 2000, 26_000} {
		b := bytes.Clone(good)
		if off < len(b) {
			b[off] ^= 0xff
		}
		seeds = append(seeds, b)
	}
	return seeds
}

func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(runFuzzOpen)
}

func runFuzzOpen(t *testing.T, data []byte) {
	dir := t.TempDir()
	for i, part := range bytes.SplitN(data, fuzzSep, len(fuzzFiles)) {
		if err := os.WriteFile(filepath.Join(dir, fuzzFiles[i]), part, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(dir, Options{Capacity: MinCapacity, SegmentSize: 64 << 10, Logger: quietLogger()})
	if err != nil {
		return
	}
	defer r.Close()
	check := func(id ID, fr *fragmenter.Fragment) {
		enc, err := fr.MarshalBinary()
		if err != nil {
			t.Fatalf("id %d: returned fragment does not re-encode: %v", id, err)
		}
		r.mu.Lock()
		i := r.find(id)
		ok := i >= 0 && r.entries[i].pcrc == crc(enc) && r.entries[i].plen == uint32(len(enc))
		r.mu.Unlock()
		if !ok {
			t.Fatalf("id %d: returned fragment does not match its stored checksum", id)
		}
	}
	r.Range(time.Time{}, time.Time{}, func(id ID, fr fragmenter.Fragment) error {
		check(id, &fr)
		return nil
	})
	for from := ID(0); ; {
		r.mu.Lock()
		more := r.search(from) < len(r.entries)
		r.mu.Unlock()
		if !more { // Next would wait for an append
			break
		}
		id, fr, err := r.Next(context.Background(), from)
		if err != nil {
			t.Fatal(err)
		}
		check(id, &fr)
		from = id + 1
	}
	if first, ok := r.FirstUnacked(); ok {
		r.Ack(first)
	}
	fr := genFragment(99, 500)
	id, err := r.Append(&fr)
	if err != nil {
		t.Fatalf("append to a recovered ring: %v", err)
	}
	r.Close()
	r2, err := Open(dir, Options{Capacity: MinCapacity, SegmentSize: 64 << 10, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopen after recovery: %v", err)
	}
	defer r2.Close()
	_, got, err := r2.Next(context.Background(), id)
	if err != nil || !sameFragment(&got, &fr) {
		t.Fatalf("fragment appended after recovery lost: %v", err)
	}
}
