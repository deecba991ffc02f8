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
The ring is only read, so this works while the service is running.

Fragments captured before the clock was synchronised have no wall time
(those of an earlier boot never will). They are left out, unless -unsynced
is given: then only they are written, timed from the start of the boot
that captured them; the fragments of each later boot follow those of the
boot before.`

// cmdExport copies a time range of a ring buffer into an MKV file.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "[-config FILE] -stream NAME [-from RFC3339] [-to RFC3339] -o OUT.mkv", exportAbout)
	cfgPath := configFlag(fs)
	streamName := fs.String("stream", "", "stream `name`")
	fromFlag := fs.String("from", "", "start of the range, RFC 3339 `time` (default: the oldest fragment)")
	toFlag := fs.String("to", "", "end of the range, RFC 3339 `time` (default: the newest fragment)")
	out := fs.String("o", "", "output MKV `file`")
	unsynced := fs.Bool("unsynced", false, "write only the fragments stored without wall time, timed from their boot's start")
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
	if *unsynced && (!from.IsZero() || !to.IsZero()) {
		return usageErrorf("-unsynced writes every fragment without wall time; it takes no -from or -to")
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
	n, err := exportRing(ctx, r, from, to, *out, *unsynced)
	if err != nil {
		return err
	}
	if *unsynced {
		if n.Fragments == 0 {
			return fmt.Errorf("the ring buffer of stream %s (%s) holds no fragments without wall time; nothing written", st.Name, dir)
		}
		fmt.Fprintf(stdout, "%s: %d frames in %d fragments stored without wall time, from %d boots; times are since each boot's start, later boots follow earlier ones\n",
			*out, n.Frames, n.Fragments, n.Boots)
		return nil
	}
	if n.Fragments == 0 {
		if n.Unsynced > 0 {
			return fmt.Errorf("the %d fragments of stream %s in range have no wall time (stored before the clock was synchronised); write them with -unsynced", n.Unsynced, st.Name)
		}
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
	if n.Unsynced > 0 {
		fmt.Fprintf(stdout, "; %d fragments without wall time left out (stored before the clock was synchronised; -unsynced writes them)", n.Unsynced)
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
	Skipped int
	// Unsynced counts fragments left out for want of wall time; Boots
	// the boots that -unsynced fragments came from.
	Unsynced, Boots int
	first, last     time.Time
}

// exportRing writes the fragments of r overlapping [from, to) to path as
// one Matroska file: a fragment's header is written whenever it differs
// from the previous one (starting a new Segment), otherwise only its
// Cluster. Fragments are in id order, which is capture order; one that
// starts before its predecessor ends (the wall clock stepped back) is left
// out and counted, because it would make the file's timecodes go
// backwards. The file appears under its name only when complete; when no
// fragment matched, nothing is written.
//
// With unsynced, only fragments without wall time are written, at their
// monotonic times (ms since boot); each boot's fragments are shifted to
// follow the previous boot's, since the boots' clocks share no origin.
func exportRing(ctx context.Context, r *ring.Ring, from, to time.Time, path string, unsynced bool) (exportCounts, error) {
	var n exportCounts
	tmp, err := atomicfile.Create(path, outputPerm)
	if err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	defer tmp.Abort()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	fw := fragmenter.NewFileWriter(bw)
	var boot fragmenter.BootID
	var shift int64
	err = r.Range(from, to, func(_ ring.ID, f fragmenter.Fragment) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f.WallUnknown != unsynced {
			if f.WallUnknown {
				n.Unsynced++
			}
			return nil
		}
		if unsynced {
			if n.Boots == 0 || f.Boot != boot {
				boot = f.Boot
				n.Boots++
				if n.Fragments > 0 {
					shift = n.last.UnixMilli() + 1 - f.Timecode
				}
			}
			if err := f.Rebase(f.Timecode + shift); err != nil {
				return err
			}
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
