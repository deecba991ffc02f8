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

// DefaultMaxHoldBytes caps the frames a Mapper keeps in memory while its
// receiver is slow: four minutes of a 2 Mbit/s stream (a long stall of
// the disk), while leaving a Pi Zero (512 MiB) plenty of room.
const DefaultMaxHoldBytes = 64 << 20

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
// instant; Run stamps them with wall time (when it is known) and delivers
// them in order.
//
// Capture never waits: Push only appends to a queue. Run, in its own
// goroutine, waits for the receiver, so a slow receiver makes the queue
// grow, up to MaxHoldBytes; the clock never does. Beyond
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
			m.q[m.head].Release()
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
		m.log.Warn("capture queue full: dropping oldest frames",
			"reason", "the receiver is not keeping up", "limit_bytes", m.maxBytes, "dropped", n)
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
// cancelled; it returns nil then. Only one Run may be active. While the
// wall clock is unsynchronised, frames go on at once with a zero Time and
// their monotonic instant (see Timeline.Stamp): the receiver stores them
// and places them on the wall clock once it is known.
func (m *Mapper) Run(ctx context.Context, out chan<- media.Frame) error {
	unknownSince := time.Duration(-1)
	for {
		f, ok := m.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-m.wake:
			}
			continue
		}
		var known bool
		f.Time, known = m.tl.Stamp(f.Mono, f.Key)
		switch {
		case !known && unknownSince < 0:
			unknownSince = f.Mono
			m.log.Info("wall clock not synchronised: frames go on with their monotonic capture times; they are uploaded once the clock is synchronised")
		case known && !m.anchored.Load():
			m.anchored.Store(true)
			if unknownSince >= 0 {
				m.log.Info("wall clock synchronised: frames carry wall time again",
					"unsynchronised_for", f.Mono-unknownSince,
					"wall_at_boot", time.Unix(0, int64(m.tl.Offset())).UTC())
			}
		}
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
