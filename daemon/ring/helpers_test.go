package ring

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// baseTC is the timecode of seed 0; fragments are 2 s apart.
const (
	baseTC      = int64(1_767_225_600_000) // 2026-01-01T00:00:00Z
	fragSpacing = 2000
)

// genFragment builds the fragment for seed deterministically, so that a
// checker can regenerate the exact bytes from the timecode alone. The ring
// does not interpret Header or Cluster, so random bytes do.
func genFragment(seed int64, size int) fragmenter.Fragment {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	hdr := make([]byte, 64+rng.IntN(64))
	for i := range hdr {
		hdr[i] = byte(rng.Uint32())
	}
	cl := make([]byte, size)
	for i := 0; i+8 <= len(cl); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8; k++ {
			cl[i+k] = byte(v >> (8 * k))
		}
	}
	return fragmenter.Fragment{
		Timecode: baseTC + seed*fragSpacing,
		Duration: fragSpacing * time.Millisecond,
		Frames:   60,
		Header:   hdr,
		Cluster:  cl,
	}
}

// sizeFor picks a pseudo-random cluster size for seed in [lo, hi).
func sizeFor(seed int64, lo, hi int) int {
	return lo + int(uint64(seed)*0x9e3779b97f4a7c15>>33)%(hi-lo)
}

// seedOf inverts genFragment's timecode.
func seedOf(f *fragmenter.Fragment) int64 { return (f.Timecode - baseTC) / fragSpacing }

func sameFragment(a, b *fragmenter.Fragment) bool {
	return a.Timecode == b.Timecode && a.Duration == b.Duration && a.Frames == b.Frames &&
		bytes.Equal(a.Header, b.Header) && bytes.Equal(a.Cluster, b.Cluster)
}

// logCapture is a slog handler that keeps records for assertions.
type logCapture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

// count returns how many records at level lvl mention substr.
func (l *logCapture) count(lvl slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == lvl && bytes.Contains([]byte(r.Message), []byte(substr)) {
			n++
		}
	}
	return n
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustOpen(t testing.TB, dir string, o Options) *Ring {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	r, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

func mustAppend(t testing.TB, r *Ring, f *fragmenter.Fragment) ID {
	t.Helper()
	id, err := r.Append(f)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return id
}

// collect reads every stored fragment through Range.
func collect(t testing.TB, r *Ring) ([]ID, []fragmenter.Fragment) {
	t.Helper()
	var ids []ID
	var fs []fragmenter.Fragment
	if err := r.Range(time.Time{}, time.Time{}, func(id ID, f fragmenter.Fragment) error {
		ids = append(ids, id)
		fs = append(fs, f)
		return nil
	}); err != nil {
		t.Fatalf("Range: %v", err)
	}
	return ids, fs
}

// diskUsage returns the bytes dir's files occupy on disk.
func diskUsage(t testing.TB, dir string) int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, de := range des {
		fi, err := os.Stat(filepath.Join(dir, de.Name()))
		if err != nil {
			continue
		}
		n += fi.Sys().(*syscall.Stat_t).Blocks * 512
	}
	return n
}

func segFiles(t testing.TB, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// has reports whether a record at lvl mentioning substr has attribute key
// with a value whose text is val.
func (l *logCapture) has(lvl slog.Level, substr, key, val string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Level != lvl || !bytes.Contains([]byte(r.Message), []byte(substr)) {
			continue
		}
		found := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key && a.Value.String() == val {
				found = true
			}
			return !found
		})
		if found {
			return true
		}
	}
	return false
}
