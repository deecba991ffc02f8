package fragmenter

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/media"
)

// Fragment duration limits.
const (
	// DefaultFragmentDuration is the target length of a fragment. KVS
	// persists and acknowledges whole fragments, so shorter fragments mean
	// faster acknowledgements and less to resend after a failure.
	DefaultFragmentDuration = 2 * time.Second
	// MaxFragmentDuration is the KVS limit: a longer fragment is rejected
	// whole (error 4002), so the fragmenter cuts before it.
	MaxFragmentDuration = 10 * time.Second
	// MaxFragmentBytes is where the fragmenter cuts a fragment by size:
	// below the service's 50 MB limit (MaxClusterSize, error 4001), with
	// room for one more large frame and the block headers.
	MaxFragmentBytes = MaxClusterSize - 2<<20
	// initialClusterCap is the first cluster buffer's size; later buffers
	// are sized from the fragments seen so far.
	initialClusterCap = 256 << 10
	// smallClusterCap is the size of the buffer a fragment starts in
	// until the previous fragment's buffer comes back (see Recycle): room
	// for a 1080p key frame.
	smallClusterCap = initialClusterCap
)

// KeyFrameRequester is the part of a source the fragmenter talks back to.
type KeyFrameRequester interface {
	RequestKeyFrame()
}

// Config configures a Fragmenter.
type Config struct {
	// FragmentDuration is the target; a fragment closes at the first IDR
	// at or after it. Zero means DefaultFragmentDuration.
	FragmentDuration time.Duration
	// MaxDuration is the hard cap; zero means MaxFragmentDuration.
	MaxDuration time.Duration
	// KeyFrames, if set, is asked for an IDR when a fragment reaches its
	// target length without one.
	KeyFrames KeyFrameRequester
	Logger    *slog.Logger
}

// Stats counts what the fragmenter did with the frames it was given.
type Stats struct {
	Frames    uint64 // frames written into fragments
	Fragments uint64 // fragments completed
	// DroppedNoIDR counts frames dropped while waiting for an IDR picture
	// with known parameter sets: at the start of a stream, and after a
	// fragment was cut at MaxDuration.
	DroppedNoIDR uint64
	// Cut counts fragments closed at MaxDuration because no IDR came.
	Cut uint64
	// Retimed counts frames whose timestamp was not after the previous
	// frame's and was moved 1 ms past it to keep timecodes increasing.
	Retimed          uint64
	KeyFrameRequests uint64
	HeaderChanges    uint64
}

// Fragmenter groups frames into fragments. It is not safe for concurrent
// use; one goroutine owns it (see Run).
type Fragmenter struct {
	target, max time.Duration
	keys        KeyFrameRequester
	log         *slog.Logger

	// Parameter sets: latest is what the stream last carried, active is
	// what the open fragment's header was built from.
	latest, active h264.DecoderConfig
	header         []byte

	open      bool
	cluster   []byte
	first     int64 // first frame's timecode, ms
	last      int64 // last frame's timecode, ms
	lastDelta int64 // interval between the last two frames, ms
	frames    int
	requested bool

	// spare is a cluster buffer handed back with Recycle.
	spare []byte
	// small is the buffer a fragment starts in when finish has no spare:
	// it holds the key frame that opened it until Recycle returns the
	// previous fragment's buffer, into which the open fragment then moves.
	// So one fragment-sized buffer serves, not two.
	small []byte

	prevEnd int64 // last timecode of any emitted fragment, ms
	stats   Stats

	// Frames whose wall time is unknown are timed on the monotonic clock
	// (ms since boot): a timeline of their own, never mixed with wall
	// time inside one fragment.
	openUnknown bool          // the open fragment is on the monotonic timeline
	openMono    time.Duration // its first frame's monotonic instant
	prevEndMono int64         // prevEnd of the monotonic timeline
	// slew is added to wall timecodes to absorb a large backward jump
	// (see SetFloor); it shrinks by MaxSlew of the time that passes.
	slew    int64
	rawLast int64 // previous wall timecode as delivered, before slew
}

// Backward jumps of frame time larger than slewAbove are absorbed by
// running the timeline slow (MaxSlew), smaller ones by moving single
// frames 1 ms past their predecessor.
const (
	slewAbove = 100
	// MaxSlew is the fraction by which frames are moved closer together
	// while a backward jump is absorbed: 33 ms frames become 30 ms apart.
	MaxSlew = 0.10
)

// SetFloor makes every later wall-clock timecode larger than floor (epoch
// ms), typically the end of the newest fragment already stored, so that
// storage order stays timecode order when the clock went back across a
// restart. Frames that arrive below it are placed one frame after it and
// the gap is absorbed gradually (MaxSlew), not by bunching frames 1 ms
// apart. It does not apply to frames whose wall time is unknown.
func (f *Fragmenter) SetFloor(floor int64) {
	f.prevEnd = max(f.prevEnd, floor)
}

// wallTime returns the timecode of a frame with a known wall time,
// applying and decaying the backward-jump slew.
func (f *Fragmenter) wallTime(raw int64) int64 {
	if f.slew > 0 && raw > f.rawLast {
		f.slew -= min(f.slew, max(int64(float64(raw-f.rawLast)*MaxSlew), 1))
	}
	f.rawLast = raw
	t := raw + f.slew
	last := f.prevEnd
	if f.open && !f.openUnknown {
		last = max(last, f.last)
	}
	if last != 0 && last-t > slewAbove {
		step := max(f.lastDelta, 1)
		f.slew += last + step - t
		t = last + step
		f.stats.Retimed++
	}
	return t
}

// New returns a Fragmenter.
func New(cfg Config) *Fragmenter {
	f := &Fragmenter{
		target: cfg.FragmentDuration,
		max:    cfg.MaxDuration,
		keys:   cfg.KeyFrames,
		log:    cfg.Logger,
	}
	if f.target <= 0 {
		f.target = DefaultFragmentDuration
	}
	if f.max <= 0 || f.max > MaxFragmentDuration {
		f.max = MaxFragmentDuration
	}
	if f.target > f.max {
		f.target = f.max
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f
}

// Stats returns the counters.
func (f *Fragmenter) Stats() Stats { return f.stats }

// SetFragmentDuration changes the target duration from the next fragment
// on (the open one closes at the first IDR past the new target). Zero
// means DefaultFragmentDuration; the target never exceeds the hard cap.
func (f *Fragmenter) SetFragmentDuration(d time.Duration) {
	if d <= 0 {
		d = DefaultFragmentDuration
	}
	f.target = min(d, f.max)
}

// Push adds one frame. If the frame completes the open fragment, that
// fragment is returned with ok set. The frame's NAL units are copied; the
// caller keeps ownership of them.
func (f *Fragmenter) Push(fr media.Frame) (out Fragment, ok bool) {
	f.noteParameterSets(fr.NALUs)
	idr := h264.IsIDR(fr.NALUs)
	unknown := fr.Time.IsZero()
	if f.open && unknown != f.openUnknown {
		// The wall clock became known (or was lost across a restart):
		// the open fragment ends here, the next starts at an IDR.
		out, ok = f.finish(0)
	}
	var t, prev int64
	if unknown {
		t, prev = fr.Mono.Milliseconds(), f.prevEndMono
	} else {
		t, prev = f.wallTime(fr.Time.UnixMilli()), f.prevEnd
	}
	if f.open {
		prev = max(prev, f.last)
	}
	if (f.open || prev != 0) && t <= prev {
		t = prev + 1
		f.stats.Retimed++
	}

	if f.open {
		elapsed := t - f.first
		switch {
		case idr && (f.reached(elapsed) || !f.latest.Equal(f.active)):
			out, ok = f.finish(t)
		case elapsed+max(f.lastDelta, 1) > f.max.Milliseconds():
			out, ok = f.finish(0)
			if !idr {
				f.stats.Cut++
				f.log.Warn("fragment cut at the duration limit without a key frame; dropping frames until the next IDR",
					"limit", f.max, "timecode", out.Timecode)
			}
		case len(f.cluster)+frameBytes(fr.NALUs) > MaxFragmentBytes:
			out, ok = f.finish(t)
			if !idr {
				f.stats.Cut++
				f.log.Warn("fragment cut at the size limit without a key frame; dropping frames until the next IDR",
					"limit", MaxFragmentBytes, "timecode", out.Timecode)
			}
		default:
			if !f.requested && f.reached(elapsed) && f.keys != nil {
				f.requested = true
				f.stats.KeyFrameRequests++
				f.keys.RequestKeyFrame()
			}
			f.add(fr, t)
			return out, ok
		}
	}
	// No fragment is open: only an IDR with known parameter sets starts one.
	if !idr || len(f.latest.SPS) == 0 || len(f.latest.PPS) == 0 || !f.start(t) {
		f.stats.DroppedNoIDR++
		return out, ok
	}
	f.openUnknown, f.openMono = unknown, fr.Mono
	f.add(fr, t)
	return out, ok
}

// frameBytes is about what a frame adds to a cluster.
func frameBytes(nalus [][]byte) int {
	n := 32 // block header and lengths
	for _, u := range nalus {
		n += 4 + len(u)
	}
	return n
}

// reached reports whether a fragment that has run for elapsed ms has
// reached its target. Half a frame interval of slack keeps timestamp
// rounding and capture jitter from pushing a fragment past an IDR that
// arrives right on time, which would double its length.
func (f *Fragmenter) reached(elapsed int64) bool {
	return elapsed+f.lastDelta/2 >= f.target.Milliseconds()
}

// Recycle hands back the Cluster buffer of a fragment the caller is done
// with, so that the next fragment reuses it instead of allocating. The
// caller must not touch the buffer afterwards.
func (f *Fragmenter) Recycle(cluster []byte) {
	if cap(cluster) < initialClusterCap {
		return
	}
	if f.open && cap(f.cluster) < cap(cluster) {
		// The open fragment began in the small buffer: move it into
		// the larger one returned. Copying the frames since the cut
		// (usually one key frame) saves holding a second
		// fragment-sized buffer.
		old := f.cluster
		f.cluster = append(cluster[:0], old...)
		if cap(old) <= smallClusterCap {
			f.small = old[:0]
		}
		return
	}
	if f.spare == nil || cap(cluster) > cap(f.spare) {
		f.spare = cluster
	}
}

// Flush closes the open fragment, if any, and returns it.
func (f *Fragmenter) Flush() (Fragment, bool) {
	if !f.open {
		return Fragment{}, false
	}
	return f.finish(0)
}

// Run feeds frames from in to the fragmenter until in is closed or ctx
// ends, handing each completed fragment to emit. Before it returns it
// pushes the frames still queued in in and flushes the open fragment, so a
// shutdown loses nothing that was captured. Cancellation returns nil; an
// emit error stops Run and is returned.
//
// The fragment passed to emit is valid only until emit returns: its
// cluster buffer is then reused for a later fragment, which keeps the
// steady state free of allocations. emit copies what it keeps (the ring
// buffer writes it to disk). Header slices are never reused.
//
// Run owns the frames it receives and releases each once it is copied
// (media.Frame.Release). Frames that arrive while emit runs wait in in; if
// emit is slow for long enough to fill in, the source drops frames and
// counts them.
func (f *Fragmenter) Run(ctx context.Context, in <-chan media.Frame, emit func(*Fragment) error) error {
	push := func(fr media.Frame) error {
		frag, ok := f.Push(fr)
		fr.Release() // copied into the cluster; the memory goes back to its pool
		if ok {
			err := emit(&frag)
			f.Recycle(frag.Cluster)
			return err
		}
		return nil
	}
	for {
		select {
		case fr, ok := <-in:
			if !ok {
				return f.flushTo(emit)
			}
			if err := push(fr); err != nil {
				return err
			}
		case <-ctx.Done():
			for {
				select {
				case fr, ok := <-in:
					if ok {
						if err := push(fr); err != nil {
							return err
						}
						continue
					}
				default:
				}
				return f.flushTo(emit)
			}
		}
	}
}

func (f *Fragmenter) flushTo(emit func(*Fragment) error) error {
	if frag, ok := f.Flush(); ok {
		err := emit(&frag)
		f.Recycle(frag.Cluster)
		return err
	}
	return nil
}

// noteParameterSets records SPS and PPS carried by an access unit. A
// change takes effect at the next IDR, which then starts a new fragment
// with a new header.
func (f *Fragmenter) noteParameterSets(nalus [][]byte) {
	// Fixed arrays keep the common case (no parameter sets, or the same
	// ones again) free of allocations.
	var spsBuf, ppsBuf [4][]byte
	sps, pps := spsBuf[:0], ppsBuf[:0]
	for _, n := range nalus {
		switch h264.Type(n) {
		case h264.NALUSPS:
			sps = append(sps, n)
		case h264.NALUPPS:
			pps = append(pps, n)
		}
	}
	if len(sps) == 0 && len(pps) == 0 {
		return
	}
	next := f.latest
	if len(sps) > 0 && !h264.EqualNALUs(sps, next.SPS) {
		next.SPS = cloneSets(sps)
	}
	if len(pps) > 0 && !h264.EqualNALUs(pps, next.PPS) {
		next.PPS = cloneSets(pps)
	}
	f.latest = next
}

// start opens a fragment at an IDR, building a new header first when the
// parameter sets changed. It fails (and the frame is dropped) only when
// the parameter sets cannot be turned into a header.
func (f *Fragmenter) start(t int64) bool {
	if f.header == nil || !f.latest.Equal(f.active) {
		h, err := MarshalHeader(f.latest)
		if err != nil {
			f.log.Error("cannot build a stream header from the stream's parameter sets; waiting for new ones", "err", err)
			return false
		}
		if f.header != nil {
			f.stats.HeaderChanges++
			f.log.Info("stream parameters changed; the next fragment starts a new segment")
		}
		f.header, f.active = h, f.latest
	}
	if f.cluster == nil {
		f.cluster = make([]byte, 0, initialClusterCap)
	}
	f.cluster = appendClusterStart(f.cluster[:0], t)
	f.open, f.first, f.last, f.frames, f.requested = true, t, t, 0, false
	return true
}

func (f *Fragmenter) add(fr media.Frame, t int64) {
	if f.frames > 0 {
		f.lastDelta = t - f.last
	}
	f.cluster = appendSimpleBlock(f.cluster, int16(t-f.first), f.frames == 0, fr.NALUs)
	f.last = t
	f.frames++
	f.stats.Frames++
}

// finish hands the open fragment out. The fragment ends where the next
// frame (at next ms, or 0 if unknown) begins, unless that frame came late;
// then one frame interval after the last frame. The cluster buffer goes
// with the fragment; the next fragment is written into a recycled buffer
// or, failing that, a small one that Recycle replaces.
func (f *Fragmenter) finish(next int64) (Fragment, bool) {
	end := f.last + max(f.lastDelta, 1)
	if next > f.last && next-f.last <= 2*max(f.lastDelta, 1) {
		end = next
	}
	dur := end - f.first
	out := Fragment{
		Timecode:    f.first,
		Duration:    time.Duration(dur) * time.Millisecond,
		Frames:      f.frames,
		Header:      f.header,
		Cluster:     f.cluster,
		Mono:        f.openMono,
		WallUnknown: f.openUnknown,
	}
	switch {
	case f.spare != nil:
		f.cluster, f.spare = f.spare[:0], nil
	case f.small != nil:
		f.cluster, f.small = f.small[:0], nil
	default:
		f.cluster = make([]byte, 0, smallClusterCap)
	}
	f.open = false
	if f.openUnknown {
		f.prevEndMono = f.last
	} else {
		f.prevEnd = f.last
	}
	f.stats.Fragments++
	return out, true
}

func cloneSets(s [][]byte) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = bytes.Clone(s[i])
	}
	return out
}
