// Package testclips describes the H.264 clips committed under testdata/ so
// that every package's tests, benchmarks and fuzz seeds share one table of
// what each clip holds. testdata/gen.sh regenerates the clips.
package testclips

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Clip is one committed Annex-B file.
type Clip struct {
	Name string
	// Frames counts the access units in the file; Decodable counts those a
	// decoder can show, which excludes pictures before the first IDR.
	Frames, Decodable int
	Width, Height     int
	FPS               int
	// LeadingNonIDR counts the access units before the first IDR.
	LeadingNonIDR int
	// IDRs counts IDR access units.
	IDRs int
}

// All lists every clip; keep it in step with testdata/clips.txt.
var All = []Clip{
	{Name: "baseline-repeat.h264", Frames: 150, Decodable: 150, Width: 320, Height: 240, FPS: 30, IDRs: 5},
	{Name: "high-aud.h264", Frames: 120, Decodable: 120, Width: 320, Height: 240, FPS: 30, IDRs: 4},
	{Name: "multislice.h264", Frames: 90, Decodable: 90, Width: 320, Height: 240, FPS: 30, IDRs: 3},
	{Name: "baseline-360p.h264", Frames: 60, Decodable: 60, Width: 640, Height: 360, FPS: 30, IDRs: 2},
	{Name: "midgop.h264", Frames: 108, Decodable: 90, Width: 320, Height: 240, FPS: 30, LeadingNonIDR: 18, IDRs: 3},
}

// Get returns the clip called name; it panics on an unknown name, which is
// a mistake in a test.
func Get(name string) Clip {
	for _, c := range All {
		if c.Name == name {
			return c
		}
	}
	panic("testclips: unknown clip " + name)
}

// Dir returns the absolute path of the repository's testdata folder.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata")
}

// Path returns the absolute path of the clip.
func (c Clip) Path() string { return filepath.Join(Dir(), c.Name) }

// Read returns the clip's bytes or fails the test.
func (c Clip) Read(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(c.Path())
	if err != nil {
		tb.Fatalf("read test clip (regenerate with testdata/gen.sh): %v", err)
	}
	return b
}
