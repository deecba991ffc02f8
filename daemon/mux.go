package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/file"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/atomicfile"
	"github.com/kvscamd/kvscamd/media"
)

const muxAbout = `
Converts an Annex-B H.264 file into a Matroska file laid out as kvscamd
uploads it: one Cluster per fragment, each starting on an IDR picture, with
absolute epoch-millisecond timecodes. Frame k is stamped start + k/fps.
Frames before the first IDR picture cannot be decoded and are left out.`

// cmdMux converts an H.264 file into KVS-conformant Matroska through the
// same file source and fragmenter the daemon runs.
func cmdMux(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mux", "-i IN.h264 -o OUT.mkv -fps N [-start RFC3339] [-fragment 2s]", muxAbout)
	in := fs.String("i", "", "input Annex-B H.264 `file`")
	out := fs.String("o", "", "output MKV `file`")
	fps := fs.Int("fps", 0, "frame rate of the input (required)")
	startFlag := fs.String("start", "", "timestamp of the first frame, RFC 3339 `time` (default now)")
	fragment := fs.Duration("fragment", fragmenter.DefaultFragmentDuration, "target fragment `duration`")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case *in == "":
		return usageErrorf("-i is required: the Annex-B H.264 file to convert")
	case *out == "":
		return usageErrorf("-o is required: the MKV file to write")
	case *fps <= 0:
		return usageErrorf("-fps is required: the input's frame rate, e.g. -fps 30")
	case *fragment <= 0 || *fragment > fragmenter.MaxFragmentDuration:
		return usageErrorf("-fragment %v: must be above 0 and at most %v, the KVS fragment limit", *fragment, fragmenter.MaxFragmentDuration)
	}
	start := time.Now()
	if *startFlag != "" {
		t, err := time.Parse(time.RFC3339Nano, *startFlag)
		if err != nil {
			return usageErrorf("-start %q: not an RFC 3339 time such as 2026-01-02T15:04:05Z", *startFlag)
		}
		start = t
	}
	src, err := file.New(file.Config{Path: *in, FPS: *fps, Start: start})
	if err != nil {
		return err
	}
	st, err := muxFile(ctx, src, *out, *fragment)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d frames in %d fragments", *out, st.Frames, st.Fragments)
	if st.DroppedNoIDR > 0 {
		fmt.Fprintf(stdout, "; %d frames before the first IDR left out", st.DroppedNoIDR)
	}
	if st.Cut > 0 {
		fmt.Fprintf(stdout, "; %d fragments cut at %v without a key frame (frames dropped until the next IDR)", st.Cut, fragmenter.MaxFragmentDuration)
	}
	fmt.Fprintln(stdout)
	return nil
}

// outputPerm is the mode of the Matroska files mux and export write: camera
// video stays private to whoever exported it.
const outputPerm = 0o600

// muxFile runs src through a fragmenter into the file at path. The file
// appears only when complete, so a failed run never leaves a truncated
// file behind.
func muxFile(ctx context.Context, src drivers.Source, path string, fragment time.Duration) (fragmenter.Stats, error) {
	tmp, err := atomicfile.Create(path, outputPerm)
	if err != nil {
		return fragmenter.Stats{}, fmt.Errorf("mux: %w", err)
	}
	defer tmp.Abort()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	fw := fragmenter.NewFileWriter(bw)
	frag := fragmenter.New(fragmenter.Config{FragmentDuration: fragment, KeyFrames: src})

	frames := make(chan media.Frame, 64)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(frames)
		return src.Run(gctx, frames)
	})
	g.Go(func() error {
		// Not gctx: the fragmenter must drain what the source sent.
		return frag.Run(context.WithoutCancel(ctx), frames, fw.WriteFragment)
	})
	if err := g.Wait(); err != nil {
		return frag.Stats(), fmt.Errorf("mux %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return frag.Stats(), fmt.Errorf("mux %s: interrupted: %w", path, err)
	}
	if fw.Fragments == 0 {
		return frag.Stats(), fmt.Errorf("mux %s: no IDR picture with its SPS and PPS in the input, nothing to write", path)
	}
	if err := bw.Flush(); err != nil {
		return frag.Stats(), fmt.Errorf("mux %s: %w", path, err)
	}
	if err := tmp.Commit(); err != nil {
		return frag.Stats(), fmt.Errorf("mux: %w", err)
	}
	return frag.Stats(), nil
}
