package stream

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender"
	"github.com/kvscamd/kvscamd/fragmenter"
)

// monoTimelineEnd separates the two timelines a ring's timecodes are on:
// a fragment captured before the wall clock was synchronised is stored at
// its monotonic instant (ms since boot, far below this), every other one
// at its epoch time (far above it: no synchronised clock reads 2001). The
// fragment's own WallUnknown flag is the authority; this lets index-only
// questions (how many, which is oldest) be answered without reading.
var monoTimelineEnd = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

func onMonoTimeline(tc int64) bool { return tc < monoTimelineEnd.UnixMilli() }

// TestBootIDEnv names a test hook: when set, it replaces the kernel's boot
// id, so that an end-to-end test can make the daemon believe the machine
// rebooted. It has no use in production.
const TestBootIDEnv = "KVSCAMD_TEST_BOOT_ID"

// currentBoot returns the boot id fragments are stamped with. If the
// kernel's cannot be read, a random one stands in: fragments of this run
// that never get wall time are then treated like those of an earlier boot
// (kept, never uploaded) after a restart, which is safe, where a shared
// zero id could place them with another boot's clock.
func currentBoot(log *slog.Logger) fragmenter.BootID {
	if s := os.Getenv(TestBootIDEnv); s != "" {
		if b, err := fragmenter.ParseBootID(s); err == nil {
			return b
		}
	}
	b, err := fragmenter.CurrentBootID()
	if err != nil {
		rand.Read(b[:])
		log.Warn("cannot read the boot id; fragments stored before the clock is synchronised can only be uploaded by this run", "err", err)
	}
	return b
}

// wallGate is the ring as the sender sees it: fragments whose wall time
// is unknown are held back until the current boot's offset wall−mono is
// known, then handed out placed on the wall clock (Rebase); fragments of
// earlier boots that never got wall time ("orphans") are never handed
// out. The sender thus only ever sees wall-clock timecodes.
type wallGate struct {
	r    *ring.Ring
	boot fragmenter.BootID
	log  *slog.Logger

	known chan struct{} // closed once off is set

	mu      sync.Mutex
	off     int64 // wall − mono of this boot, ms
	orphans map[ring.ID]struct{}
	boots   map[fragmenter.BootID]int // orphans seen per earlier boot
}

var _ sender.Store = (*wallGate)(nil)

// The sender schedules live video first only with a store that has these.
var _ interface {
	Metas(ring.ID, func(ring.Meta) bool)
	LastMeta() (ring.Meta, bool)
} = (*wallGate)(nil)

func newWallGate(r *ring.Ring, boot fragmenter.BootID, log *slog.Logger) *wallGate {
	return &wallGate{r: r, boot: boot, log: log, known: make(chan struct{}),
		orphans: map[ring.ID]struct{}{}, boots: map[fragmenter.BootID]int{}}
}

// learn sets this boot's offset wall−mono, once: from the first fragment
// stored with both a wall timecode and a monotonic instant.
func (g *wallGate) learn(offMs int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.known:
		return
	default:
	}
	g.off = offMs
	close(g.known)
	held := 0
	g.r.Spans(func(s ring.Span) bool {
		if onMonoTimeline(s.Timecode) && !s.Acked {
			if _, orphan := g.orphans[s.ID]; !orphan {
				held++
			}
		}
		return true
	})
	if held > 0 {
		g.log.Info("wall clock known: fragments stored before it was synchronised are placed on it and uploaded",
			"fragments", held, "boot_started", time.UnixMilli(offMs).UTC())
	}
}

// offset returns this boot's offset and whether it is known.
func (g *wallGate) offset() (int64, bool) {
	select {
	case <-g.known:
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.off, true
	default:
		return 0, false
	}
}

// orphan records a fragment of an earlier boot that never got wall time.
func (g *wallGate) orphan(id ring.ID, f *fragmenter.Fragment) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.orphans[id]; ok {
		return
	}
	g.orphans[id] = struct{}{}
	g.boots[f.Boot]++
	if g.boots[f.Boot] == 1 {
		g.log.Warn("fragments of an earlier boot were stored before the clock was synchronised; their wall time cannot be known, so they stay in the ring and are never uploaded; kvscamd export -unsynced writes them out",
			"boot", f.Boot.String(), "first_id", id, "since_boot", f.Mono)
	}
}

// place puts a fragment of this boot on the wall clock.
func (g *wallGate) place(f *fragmenter.Fragment, off int64) error {
	return f.Rebase(f.Timecode + off)
}

// Recycle hands a fragment's memory back to the ring (see ring.Recycle).
func (g *wallGate) Recycle(f fragmenter.Fragment) { g.r.Recycle(f) }

// Next implements sender.Store: like ring.Next, but a fragment of this
// boot without wall time is returned only once the offset is known (Next
// waits for it), and orphans are skipped.
func (g *wallGate) Next(ctx context.Context, from ring.ID) (ring.ID, fragmenter.Fragment, error) {
	id, f, _, err := g.next(ctx, from, false)
	return id, f, err
}

// NextStream is Next through ring.NextStream: what Rebase rewrites lies
// in the head the fragment holds.
func (g *wallGate) NextStream(ctx context.Context, from ring.ID) (ring.ID, fragmenter.Fragment, *ring.Body, error) {
	return g.next(ctx, from, true)
}

func (g *wallGate) next(ctx context.Context, from ring.ID, stream bool) (ring.ID, fragmenter.Fragment, *ring.Body, error) {
	for {
		var id ring.ID
		var f fragmenter.Fragment
		var body *ring.Body
		var err error
		if stream {
			id, f, body, err = g.r.NextStream(ctx, from)
		} else {
			id, f, err = g.r.Next(ctx, from)
		}
		if err != nil || !f.WallUnknown {
			return id, f, body, err
		}
		skip := func() {
			g.orphan(id, &f)
			if body != nil {
				body.Close()
			}
			from = id + 1
		}
		if f.Boot != g.boot {
			skip()
			continue
		}
		select {
		case <-g.known:
		case <-ctx.Done():
			if body != nil {
				body.Close()
			}
			return 0, fragmenter.Fragment{}, nil, ctx.Err()
		}
		off, _ := g.offset()
		if err := g.place(&f, off); err != nil {
			g.log.Error("cannot place a fragment on the wall clock; it stays in the ring", "id", id, "err", err)
			skip()
			continue
		}
		return id, f, body, nil
	}
}

// FirstUnacked implements sender.Store; orphans do not count.
func (g *wallGate) FirstUnacked() (ring.ID, bool) {
	var id ring.ID
	found := false
	g.mu.Lock()
	orphans := g.orphans
	g.r.Spans(func(s ring.Span) bool {
		if _, orphan := orphans[s.ID]; !s.Acked && !orphan {
			id, found = s.ID, true
			return false
		}
		return true
	})
	g.mu.Unlock()
	return id, found
}

// NextID implements sender.Store. While this boot's offset is unknown,
// fragments without wall time are not ready: the first of them is where
// the ready part of the ring ends.
func (g *wallGate) NextID() ring.ID {
	if _, ok := g.offset(); ok {
		return g.r.NextID()
	}
	next := g.r.NextID()
	g.mu.Lock()
	orphans := g.orphans
	g.r.Spans(func(s ring.Span) bool {
		if _, orphan := orphans[s.ID]; onMonoTimeline(s.Timecode) && !s.Acked && !orphan {
			next = s.ID
			return false
		}
		return true
	})
	g.mu.Unlock()
	return next
}

// Ack implements sender.Store.
func (g *wallGate) Ack(id ring.ID) error { return g.r.Ack(id) }

// Acked lets the sender skip fragments acknowledged before a restart.
func (g *wallGate) Acked(id ring.ID) bool { return g.r.Acked(id) }

// Range implements sender.Store, in wall time: fragments of this boot
// stored without wall time take part once the offset is known, placed on
// the wall clock; orphans never do.
func (g *wallGate) Range(from, to time.Time, fn func(ring.ID, fragmenter.Fragment) error) error {
	err := g.r.Range(from, to, func(id ring.ID, f fragmenter.Fragment) error {
		if f.WallUnknown {
			return nil
		}
		return fn(id, f)
	})
	off, known := g.offset()
	if err != nil || !known {
		return err
	}
	shift := time.Duration(off) * time.Millisecond
	mfrom, mto := time.Time{}, monoTimelineEnd
	if !from.IsZero() {
		mfrom = from.Add(-shift)
	}
	if !to.IsZero() {
		mto = to.Add(-shift)
	}
	return g.r.Range(mfrom, mto, func(id ring.ID, f fragmenter.Fragment) error {
		if !f.WallUnknown || f.Boot != g.boot || g.place(&f, off) != nil {
			return nil
		}
		return fn(id, f)
	})
}

// Stats implements sender.Store, with the oldest unacknowledged and the
// newest fragment in wall time: one not yet placed does not count.
func (g *wallGate) Stats() ring.Stats {
	rs := g.r.Stats()
	off, known := g.offset()
	wall := func(tc int64) (time.Time, bool) {
		if !onMonoTimeline(tc) {
			return time.UnixMilli(tc), true
		}
		return time.UnixMilli(tc + off), known
	}
	rs.OldestUnacked = time.Time{}
	g.mu.Lock()
	orphans := g.orphans
	g.r.Spans(func(s ring.Span) bool {
		if _, orphan := orphans[s.ID]; !s.Acked && !orphan {
			if t, ok := wall(s.Timecode); ok {
				rs.OldestUnacked = t
			}
			return false
		}
		return true
	})
	g.mu.Unlock()
	if !rs.Newest.IsZero() && onMonoTimeline(rs.Newest.UnixMilli()) {
		if t, ok := wall(rs.Newest.UnixMilli()); ok {
			rs.Newest = t
		} else {
			rs.Newest = time.Time{}
		}
	}
	return rs
}

// wallFloor returns the end of the newest fragment stored with a wall
// timecode (epoch ms), or 0: new fragments must start after it.
func wallFloor(r *ring.Ring) int64 {
	var floor int64
	r.Spans(func(s ring.Span) bool {
		if !onMonoTimeline(s.Timecode) {
			floor = max(floor, s.Timecode+max(s.Duration.Milliseconds()-1, 0))
		}
		return true
	})
	return floor
}

// reportUnplaced logs, at start, the fragments a ring holds without wall
// time: captured before the clock was synchronised, by this boot (they
// upload once it is) or an earlier one (they never do).
func reportUnplaced(r *ring.Ring, log *slog.Logger) {
	n := 0
	var first, last ring.Span
	r.Spans(func(s ring.Span) bool {
		if onMonoTimeline(s.Timecode) {
			if n == 0 {
				first = s
			}
			last = s
			n++
		}
		return true
	})
	if n > 0 {
		log.Info("the ring holds fragments stored before the clock was synchronised; those of this boot are uploaded once it is, those of earlier boots are kept and never uploaded",
			"fragments", n, "first_id", first.ID, "last_id", last.ID)
	}
}

// Metas implements the sender's live-first view of the ring: fragments
// without wall time are shown at their wall-clock place once this boot's
// offset is known; before that the ready part ends at the first of them,
// as in NextID. Orphans are left out.
func (g *wallGate) Metas(from ring.ID, fn func(ring.Meta) bool) {
	off, known := g.offset()
	g.mu.Lock()
	defer g.mu.Unlock()
	orphans := g.orphans
	g.r.Metas(from, func(m ring.Meta) bool {
		if onMonoTimeline(m.Start.UnixMilli()) {
			if _, orphan := orphans[m.ID]; orphan {
				return true
			}
			if !known {
				return false
			}
			m.Start = m.Start.Add(time.Duration(off) * time.Millisecond)
		}
		return fn(m)
	})
}

// LastMeta implements the live-first view: the newest fragment that Metas
// shows.
func (g *wallGate) LastMeta() (ring.Meta, bool) {
	if off, known := g.offset(); known {
		m, ok := g.r.LastMeta()
		if !ok || !onMonoTimeline(m.Start.UnixMilli()) {
			return m, ok
		}
		g.mu.Lock()
		_, orphan := g.orphans[m.ID]
		g.mu.Unlock()
		if !orphan {
			m.Start = m.Start.Add(time.Duration(off) * time.Millisecond)
			return m, true
		}
	}
	var last ring.Meta
	found := false
	g.Metas(0, func(m ring.Meta) bool {
		last, found = m, true
		return true
	})
	return last, found
}
