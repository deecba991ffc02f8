package v4l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/drivers"
	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/drivers/v4l2/uapi"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/backoff"
	iclock "github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/media"
)

// Buffer flags the capture loop reads.
const (
	bufFlagError              = uapi.V4L2_BUF_FLAG_ERROR
	bufFlagTimestampMask      = uapi.V4L2_BUF_FLAG_TIMESTAMP_MASK
	bufFlagTimestampUnknown   = uapi.V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN
	bufFlagTimestampMonotonic = uapi.V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC
)

// buffer is one dequeued capture buffer.
type buffer struct {
	index uint32
	data  []byte // the bytesused part of the mapped memory; valid until release
	flags uint32
	seq   uint32
	ts    time.Duration // the driver's timestamp (CLOCK_MONOTONIC normally)
}

// session is one opened, streaming device. The real one (device.go) issues
// the ioctls; tests drive the capture loop with a scripted one. A
// session is used by one goroutine only.
type session interface {
	// next waits up to timeout for a filled buffer; ok is false when none
	// came in time. A zero timeout returns at once: a buffer already
	// filled, or none.
	next(timeout time.Duration) (b buffer, ok bool, err error)
	// release hands a buffer back to the driver.
	release(b buffer) error
	// forceKeyFrame asks the encoder for an IDR picture.
	forceKeyFrame() error
	// close stops streaming and releases the device.
	close()
}

// opener opens and starts the device named in the config.
type opener func(s *Source) (session, error)

// Source captures from one V4L2 device; create it with New.
type Source struct {
	cfg      Config
	open     opener
	log      *slog.Logger
	mapper   *clock.Mapper
	errs     drivers.Counters // only its error count is used
	gapDrops atomic.Uint64
	keyReq   atomic.Bool
	seq      uint64
	// lastData is a copy of the last buffer turned into a frame, kept
	// across reopens to recognise a replay (the frame's own memory goes
	// back to the pool).
	lastData []byte
	pool     *media.FramePool
	running  sync.Mutex // one Run at a time
}

func newSource(cfg Config, open opener) (*Source, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, open: open, pool: media.NewFramePool(media.DefaultFramePoolSize)}
	s.log = cfg.Log.With("source", s.Describe())
	s.mapper = clock.NewMapper(clock.MapperConfig{Clock: cfg.Clock, MaxHoldBytes: cfg.MaxHoldBytes, Log: s.log})
	return s, nil
}

// Describe implements drivers.Source.
func (s *Source) Describe() string { return "v4l2 " + s.cfg.Device }

// RequestKeyFrame implements drivers.Source: the capture loop sets the
// force-key-frame control at its next turn, if the device has it.
func (s *Source) RequestKeyFrame() { s.keyReq.Store(true) }

// Stats implements drivers.Source.
func (s *Source) Stats() drivers.Stats { return sourceStats(s.mapper, &s.errs, s.gapDrops.Load()) }

// Run implements drivers.Source. It returns an error only for a device that
// can never work (no H.264, not a capture device); a device that is absent
// or fails is reopened with back-off until ctx ends.
func (s *Source) Run(ctx context.Context, out chan<- media.Frame) error {
	if !s.running.TryLock() {
		return fmt.Errorf("%s: Run is already active", s.Describe())
	}
	defer s.running.Unlock()
	s.seq, s.lastData = 0, nil

	// The Mapper delivers from its own goroutine, so a slow receiver never
	// stalls the re-queueing of buffers.
	defer s.mapper.Start(ctx, out)()

	restarts := backoff.Backoff{Min: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff}
	for {
		started := s.cfg.Clock.Mono()
		err := s.capture(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		s.errs.CountError()
		if s.cfg.Clock.Mono()-started >= drivers.HealthyRun {
			restarts.Reset()
		}
		wait := restarts.Next()
		s.log.Warn("capture interrupted; reopening the device", "err", err, "retry_in", wait)
		if iclock.Sleep(ctx, s.cfg.Clock, wait) != nil {
			return nil
		}
	}
}

// fatalError marks errors that reopening cannot fix.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// capture opens the device and streams until an error, a stall or the end
// of ctx. Panics in the ioctl layer become errors, so that one bad buffer
// cannot take the daemon down.
func (s *Source) capture(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("v4l2 %s: panic during capture: %v", s.cfg.Device, r)
		}
	}()
	sess, err := s.open(s)
	if err != nil {
		return err
	}
	defer sess.close()
	return s.stream(ctx, sess)
}

// stream dequeues buffers until an error, a stall, or ctx ends.
func (s *Source) stream(ctx context.Context, sess session) error {
	path := s.cfg.Device
	var asm assembler
	first := true
	var lastSeq uint32
	lastFrame := time.Now()
	keyUnsupported := false
	// Batching: after the first buffer of a wake, the loop takes what else
	// is ready without waiting, then sleeps until the batch interval has
	// passed since that buffer, while the driver fills the free buffers;
	// it waits for the device only if nothing is ready after that.
	batch := s.cfg.batchInterval()
	wait := pollInterval
	var woke time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		if s.keyReq.Swap(false) && !keyUnsupported {
			if err := sess.forceKeyFrame(); err != nil {
				// Logged once per open: the fragmenter may ask often.
				keyUnsupported = true
				s.log.Info("device cannot force a key frame; requests are ignored until it is reopened", "err", err)
			}
		}
		buf, ok, err := sess.next(wait)
		if err != nil {
			return fmt.Errorf("v4l2 %s: %w", path, err)
		}
		if !ok && wait == 0 {
			// Real time, whatever clock stamps the frames: this paces
			// the device's reads, like the poll timeout.
			t := time.NewTimer(batch - time.Since(woke))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			wait = pollInterval
			continue
		}
		if !ok {
			if time.Since(lastFrame) > s.cfg.StallTimeout {
				return fmt.Errorf("v4l2 %s: no frame for %v", path, s.cfg.StallTimeout)
			}
			continue
		}
		lastFrame = time.Now()
		if batch > 0 && wait > 0 {
			woke, wait = lastFrame, 0
		}
		s.handle(&asm, buf, first, &lastSeq)
		first = false
		if err := sess.release(buf); err != nil {
			return fmt.Errorf("v4l2 %s: re-queue buffer %d: %w", path, buf.index, err)
		}
	}
}

// handle turns one dequeued buffer into a frame for the Mapper. reopened
// is true for the first buffer of a session.
func (s *Source) handle(asm *assembler, buf buffer, reopened bool, lastSeq *uint32) {
	if !reopened {
		if gap := buf.seq - *lastSeq - 1; gap > 0 && gap < 1<<31 {
			s.gapDrops.Add(uint64(gap))
			s.seq += uint64(gap)
			s.log.Debug("driver skipped frames", "count", gap)
		}
	}
	*lastSeq = buf.seq
	if buf.flags&bufFlagError != 0 || len(buf.data) == 0 {
		s.gapDrops.Add(1)
		s.seq++
		return
	}
	// Copy out of the mmap buffer: it goes back to the driver right away,
	// and Frame's NAL units must belong to the receiver.
	m := s.pool.Get()
	m.Data = append(m.Data[:0], buf.data...)
	data := m.Data
	if reopened && len(s.lastData) > 0 && bytes.HasPrefix(data, s.lastData) {
		// The buffer delivered last, handed out again after a reopen:
		// v4l2loopback 0.12 repeats its newest buffer to a new reader,
		// with a stale bytesused that appends garbage. An encoder never
		// emits a picture that begins with the whole previous one
		// (frame_num differs).
		s.log.Debug("dropping a frame already delivered", "seq", buf.seq)
		m.Free()
		return
	}
	s.lastData = append(s.lastData[:0], data...)
	nalus, err := asm.addTo(data, m.NALUs[:0])
	if err != nil {
		s.log.Warn("buffer is not H.264 Annex-B; dropped", "err", err, "bytes", len(data))
		m.Free() // the assembler keeps nothing of a buffer it refused
		s.gapDrops.Add(1)
		s.seq++
		return
	}
	if nalus == nil {
		return // parameter sets only; they join the next picture
	}
	mono := s.cfg.Clock.Mono()
	// Drivers stamp buffers on CLOCK_MONOTONIC; some (v4l2loopback) do
	// so without setting the flag that says it, so an unflagged
	// timestamp is taken when it is plausible: not in the future and not
	// older than the stall timeout.
	switch tsType := buf.flags & bufFlagTimestampMask; {
	case buf.ts <= 0 || buf.ts > mono+time.Millisecond:
	case tsType == bufFlagTimestampMonotonic:
		mono = buf.ts
	case tsType == bufFlagTimestampUnknown && mono-buf.ts < s.cfg.StallTimeout:
		mono = buf.ts
	}
	m.NALUs = nalus
	fr := media.Frame{Mono: mono, Key: h264.IsIDR(nalus), Seq: s.seq}
	fr.Attach(m)
	s.mapper.Push(fr)
	s.seq++
}
