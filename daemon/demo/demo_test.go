package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kvscamd/kvscamd/internal/mkvcheck"
)

// TestDemo builds kvscamd, runs the demo for a few seconds and checks that
// the endpoint received valid video: what `make demo` shows a new user.
func TestDemo(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "kvscamd")
	build := exec.Command("go", "build", "-o", bin, "./daemon")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kvscamd: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "demo-out")
	var log io.Writer = io.Discard
	if testing.Verbose() {
		log = os.Stdout
	}
	res, err := run([]string{"-kvscamd", bin, "-clip", filepath.Join(root, "testdata", "baseline-repeat.h264"),
		"-seconds", "5", "-out", out}, log)
	if err != nil {
		t.Fatal(err)
	}
	if res.fragments < 2 || len(res.files) == 0 {
		t.Fatalf("demo received %d fragments in %v, want at least 2", res.fragments, res.files)
	}
	for f, frames := range res.files {
		mkvcheck.Check(t, f, mkvcheck.Expect{Frames: frames})
	}
}
