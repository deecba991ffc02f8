package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/atomicfile"
)

const exportAbout = `
Writes the fragments of one stream's ring buffer that fall in a time range
(by default all of them) into one MKV file, whether or not they have been
uploaded yet. A fragment is included when any part of it lies in the range.
The ring is only read, so this works while the service is running.`

// cmdExport copies a time range of a ring buffer into an MKV file.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "[-config FILE] -stream NAME [-from RFC3339] [-to RFC3339] -o OUT.mkv", exportAbout)
	cfgPath := configFlag(fs)
	streamName := fs.String("stream", "", "stream `name`")
	fromFlag := fs.String("from", "", "start of the range, RFC 3339 `time` (default: the oldest fragment)")
	toFlag := fs.String("to", "", "end of the range, RFC 3339 `time` (default: the newest fragment)")
	out := fs.String("o", "", "output MKV `file`")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *out == "" {
		return usageErrorf("-o is required: the MKV file to write")
	}
	from, err := parseTimeFlag("from", *fromFlag)
	if err != nil {
		return err
	}
	to, err := parseTimeFlag("to", *toFlag)
	if err != nil {
		return err
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return usageErrorf("-from %s is not before -to %s", *fromFlag, *toFlag)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var names []string
	var st *config.Stream
	for i := range cfg.Streams {
		names = append(names, cfg.Streams[i].Name)
		if cfg.Streams[i].Name == *streamName {
			st = &cfg.Streams[i]
		}
	}
	if st == nil {
		if *streamName == "" {
			return usageErrorf("-stream is required; configured streams in %s: %s", *cfgPath, strings.Join(names, ", "))
		}
		return usageErrorf("no stream %q in %s; configured streams: %s", *streamName, *cfgPath, strings.Join(names, ", "))
	}
	dir := cfg.RingDir(st.Name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stream %s has no ring buffer yet (%s does not exist); kvscamd run creates it when it captures", st.Name, dir)
	}
	log := newLogger(stderr, slog.LevelWarn)
	r, err := ring.Open(dir, ring.Options{Capacity: int64(st.RingSize), ReadOnly: true, Logger: log})
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := exportRing(ctx, r, from, to, *out)
	if err != nil {
		return err
	}
	if n.Fragments == 0 {
		rs := r.Stats()
		if rs.Fragments == 0 {
			return fmt.Errorf("the ring buffer of stream %s (%s) is empty; nothing written", st.Name, dir)
		}
		return fmt.Errorf("no fragments of stream %s between %s and %s; the ring holds %s to %s; nothing written",
			st.Name, showTime(from, "the start"), showTime(to, "the end"),
			rs.Oldest.UTC().Format(time.RFC3339), rs.Newest.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "%s: %d frames in %d fragments, %s to %s", *out, n.Frames, n.Fragments,
		n.first.UTC().Format(time.RFC3339Nano), n.last.UTC().Format(time.RFC3339Nano))
	if n.Skipped > 0 {
		fmt.Fprintf(stdout, "; %d fragments left out because they start before the previous one ends (the clock went back, e.g. across a restart)", n.Skipped)
	}
	fmt.Fprintln(stdout)
	return nil
}

func parseTimeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usageErrorf("-%s %q: not an RFC 3339 time such as 2026-01-02T15:04:05Z", name, v)
	}
	return t, nil
}

func showTime(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339Nano)
}

type exportCounts struct {
	Fragments, Frames int
	// Skipped counts fragments left out because their time overlaps the
	// fragment before them: Matroska needs increasing timecodes.
	Skipped     int
	first, last time.Time
}

// exportRing writes the fragments of r overlapping [from, to) to path as
// one Matroska file: a fragment's header is written whenever it differs
// from the previous one (starting a new Segment), otherwise only its
// Cluster. Fragments are in id order, which is capture order; one that
// starts before its predecessor ends (the wall clock stepped back) is left
// out and counted, because it would make the file's timecodes go
// backwards. The file appears under its name only when complete; when no
// fragment matched, nothing is written.
func exportRing(ctx context.Context, r *ring.Ring, from, to time.Time, path string) (exportCounts, error) {
	var n exportCounts
	tmp, err := atomicfile.Create(path, outputPerm)
	if err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	defer tmp.Abort()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	fw := fragmenter.NewFileWriter(bw)
	err = r.Range(from, to, func(_ ring.ID, f fragmenter.Fragment) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n.Fragments > 0 && f.Time().Before(n.last) {
			n.Skipped++
			return nil
		}
		if n.Fragments == 0 {
			n.first = f.Time()
		}
		n.last = f.End()
		n.Fragments++
		return fw.WriteFragment(&f)
	})
	n.Frames = fw.Frames
	if err != nil {
		return n, fmt.Errorf("export %s: %w", path, err)
	}
	if n.Fragments == 0 {
		return n, nil
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("export %s: %w", path, err)
	}
	if err := tmp.Commit(); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}
