package stream

import (
	"context"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/drivers"
)

// meter turns the source's counters into a frame rate and bitrate over
// the last meterEvery.
type meter struct {
	at          time.Time
	frames      uint64
	bytes       uint64
	fps, bitsPS float64
}

func (s *Stream) meterLoop(ctx context.Context) error {
	t := time.NewTicker(meterEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			st := s.sourceStats()
			s.mu.Lock()
			m := &s.meter
			if !m.at.IsZero() {
				dt := now.Sub(m.at).Seconds()
				m.fps = float64(st.Frames-m.frames) / dt
				m.bitsPS = float64(st.Bytes-m.bytes) * 8 / dt
			}
			m.at, m.frames, m.bytes = now, st.Frames, st.Bytes
			s.mu.Unlock()
		}
	}
}

// sourceStats sums the current source's counters and those of the
// sources it replaced.
func (s *Stream) sourceStats() drivers.Stats {
	s.mu.Lock()
	src, st := s.src, s.retired
	s.mu.Unlock()
	if src != nil {
		st = addStats(st, src.Stats())
	}
	return st
}

// Status returns a snapshot of the stream; safe to call at any time.
func (s *Stream) Status() status.Stream {
	src := s.sourceStats()
	rs := s.gate.Stats()
	s.mu.Lock()
	out := status.Stream{
		Name:              s.name,
		State:             s.state,
		Capture:           s.capture,
		Mode:              string(s.cfg.Mode),
		FPS:               round2(s.meter.fps),
		Bitrate:           round2(s.meter.bitsPS),
		FramesCaptured:    src.Frames,
		FramesDropped:     src.Dropped,
		FragmentsStored:   s.stored.Load(),
		FragmentsLost:     rs.Lost + rs.Expired,
		FragmentsUnacked:  rs.Unacked,
		AppendErrors:      s.appendErrors.Load(),
		RingBytesUsed:     rs.BytesUsed,
		RingBytesCapacity: rs.Capacity,
		OldestUnacked:     rs.OldestUnacked,
		NewestStored:      rs.Newest,
		LastError:         s.lastErr,
	}
	out.RingBytesEffective = rs.EffectiveCapacity
	if s.src != nil {
		out.Source = s.src.Describe()
	}
	snd, why := s.snd, s.sndWhy
	s.mu.Unlock()
	if !rs.OldestUnacked.IsZero() {
		out.OldestUnackedAge = status.Duration(time.Since(rs.OldestUnacked))
	}
	if snd == nil {
		out.Uploader.State = "not running: " + why
		if why == "" {
			out.Uploader.State = "starting"
		}
		return out
	}
	ss := snd.Stats()
	out.Uploader = status.UploaderStatus{
		State:       ss.State,
		Alert:       ss.Alert,
		RateLimit:   ss.RateLimit,
		Connections: ss.Connections,
		BytesSent:   ss.Bytes,

		UploadOrder:   ss.UploadOrder,
		LiveLag:       status.Duration(ss.LiveLag),
		Backlog:       ss.Backlog,
		BacklogBytes:  ss.BacklogBytes,
		BacklogAge:    status.Duration(ss.BacklogAge),
		SetAside:      ss.SetAside,
		SetAsideTotal: ss.SetAsideTotal,
		Stale:         ss.Stale,
		ClockOffset:   status.Duration(ss.ClockOffset),
	}
	out.Mode = ss.Mode
	out.FragmentsAcked = ss.Acked
	out.FragmentsSkipped = ss.Skipped
	out.NewestAcked = ss.NewestAcked
	out.LiveLag = status.Duration(ss.LiveLag)
	return out
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
