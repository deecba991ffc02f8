package clock

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/media"
)

// DefaultMaxHoldBytes caps the frames a Mapper keeps in memory: about four
// minutes of a 2 Mbit/s stream, which covers NTP after a normal boot,
// while leaving a Pi Zero (512 MiB) plenty of room.
const DefaultMaxHoldBytes = 64 << 20

// SyncPoll is how often a Mapper holding frames re-checks the clock when no
// new frame arrives to prompt it.
const SyncPoll = 500 * time.Millisecond

// frameOverhead approximates the memory a queued frame costs beyond its
// NAL unit bytes (slice headers, Frame struct).
const frameOverhead = 128

// MapperConfig configures a Mapper.
type MapperConfig struct {
	Clock Clock
	// MaxHoldBytes caps the queue; 0 means DefaultMaxHoldBytes.
	MaxHoldBytes int
	Log          *slog.Logger
}

// Mapper sits between a driver's capture loop and the receiver of its
// frames. The capture loop Pushes frames carrying their monotonic capture
// instant; Run stamps them with wall time and delivers them in order.
//
// Capture never waits: Push only appends to a queue. Run, in its own
// goroutine, waits for the receiver, so a slow receiver or an
// unsynchronised clock makes the queue grow, up to MaxHoldBytes. Beyond
// that the oldest frames are dropped a whole GOP at a time (so what remains
// still starts with a key frame) and counted in Stats().Dropped. Frames
// before the first key frame are kept like any other; the receiver decides
// what to do with them.
type Mapper struct {
	tl       *Timeline // owned by Run's goroutine
	clk      Clock
	maxBytes int
	log      *slog.Logger
	wake     chan struct{}

	mu        sync.Mutex // guards the fields below
	q         []media.Frame
	head      int
	bytes     int
	dropping  bool        // inside a drop episode; logged once per episode
	anchored  atomic.Bool // the timeline has an anchor; read by Push for log messages
	delivered atomic.Uint64
	nbytes    atomic.Uint64
	dropped   atomic.Uint64
}

// NewMapper returns a Mapper; nil Log means slog.Default().
func NewMapper(cfg MapperConfig) *Mapper {
	if cfg.MaxHoldBytes <= 0 {
		cfg.MaxHoldBytes = DefaultMaxHoldBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Mapper{
		tl:       NewTimeline(cfg.Clock),
		clk:      cfg.Clock,
		maxBytes: cfg.MaxHoldBytes,
		log:      cfg.Log,
		wake:     make(chan struct{}, 1),
	}
}

func frameSize(f media.Frame) (data, mem int) {
	for _, n := range f.NALUs {
		data += len(n)
	}
	return data, data + frameOverhead + 24*len(f.NALUs)
}

// Push queues a captured frame. f.Mono must hold the capture instant on
// CLOCK_MONOTONIC; f.Time is overwritten. Push never blocks.
func (m *Mapper) Push(f media.Frame) {
	_, size := frameSize(f)
	m.mu.Lock()
	m.q = append(m.q, f)
	m.bytes += size
	if m.bytes > m.maxBytes {
		m.shed()
	} else if m.dropping && m.bytes < m.maxBytes/2 {
		m.dropping = false
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// shed drops the oldest GOPs until the queue fits. Called with mu held.
func (m *Mapper) shed() {
	n := 0
	for m.bytes > m.maxBytes && len(m.q)-m.head > 1 {
		// Drop the head frame and every following frame up to (not
		// including) the next key frame.
		for {
			_, size := frameSize(m.q[m.head])
			m.bytes -= size
			m.q[m.head] = media.Frame{}
			m.head++
			n++
			if len(m.q)-m.head <= 1 || m.q[m.head].Key {
				break
			}
		}
	}
	m.dropped.Add(uint64(n))
	if !m.dropping {
		m.dropping = true
		reason := "the receiver is not keeping up"
		if !m.anchored.Load() {
			reason = "the wall clock is not synchronised, so frames cannot be stamped yet"
		}
		m.log.Warn("capture queue full: dropping oldest frames",
			"reason", reason, "limit_bytes", m.maxBytes, "dropped", n)
	}
	m.compact()
}

// compact reclaims the consumed front of the queue once it dominates.
func (m *Mapper) compact() {
	if m.head > 64 && m.head*2 > len(m.q) {
		k := copy(m.q, m.q[m.head:])
		clear(m.q[k:])
		m.q = m.q[:k]
		m.head = 0
	}
}

// pop removes and returns the oldest queued frame.
func (m *Mapper) pop() (media.Frame, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.head == len(m.q) {
		return media.Frame{}, false
	}
	f := m.q[m.head]
	m.q[m.head] = media.Frame{}
	m.head++
	_, size := frameSize(f)
	m.bytes -= size
	if m.head == len(m.q) {
		m.q, m.head = m.q[:0], 0
	} else {
		m.compact()
	}
	return f, true
}

// Queued returns the number of frames waiting.
func (m *Mapper) Queued() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.q) - m.head
}

// Start runs Run in a goroutine of its own, so that a slow receiver never
// holds up the capture loop that pushes frames. The returned stop function
// cancels it and waits for it to end; callers defer it.
func (m *Mapper) Start(ctx context.Context, out chan<- media.Frame) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, out) //nolint:errcheck // returns nil on cancel
	}()
	return func() {
		cancel()
		<-done
	}
}

// Run delivers queued frames to out, stamped with wall time, until ctx is
// cancelled; it returns nil then. Only one Run may be active.
func (m *Mapper) Run(ctx context.Context, out chan<- media.Frame) error {
	waitingSince := time.Duration(-1)
	for {
		if !m.tl.Anchored() {
			if m.Queued() > 0 && waitingSince < 0 {
				waitingSince = m.clk.Mono()
				m.log.Info("holding frames until the wall clock is synchronised")
			}
			select {
			case <-ctx.Done():
				return nil
			case <-m.wake:
			case <-m.clk.After(SyncPoll):
			}
			continue
		}
		if !m.anchored.Load() {
			m.anchored.Store(true)
			if waitingSince >= 0 {
				m.log.Info("wall clock synchronised: releasing held frames",
					"held_frames", m.Queued(), "waited", m.clk.Mono()-waitingSince,
					"wall_at_boot", time.Unix(0, int64(m.tl.Offset())).UTC())
			}
		}
		f, ok := m.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-m.wake:
			}
			continue
		}
		f.Time, _ = m.tl.Stamp(f.Mono, f.Key)
		data, _ := frameSize(f)
		select {
		case out <- f:
			m.delivered.Add(1)
			m.nbytes.Add(uint64(data))
		case <-ctx.Done():
			return nil
		}
	}
}

// Stats returns frames and bytes delivered and frames dropped; Errors is
// always zero (errors belong to the driver).
func (m *Mapper) Stats() drivers.Stats {
	return drivers.Stats{
		Frames:  m.delivered.Load(),
		Bytes:   m.nbytes.Load(),
		Dropped: m.dropped.Load(),
	}
}
