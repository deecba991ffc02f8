package stream

import (
	"fmt"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/status"
)

// Effects of a change, as Apply reports them in status.Change.Effect.
const (
	EffectLive          = "live"
	EffectSource        = "source restarted"
	EffectStreamRestart = "needs the stream restarted"
)

// Apply changes the running stream to st, which must carry the same
// name. It validates st with the same code as `kvscamd check`; an invalid
// table changes nothing and returns every problem. Each change is sorted
// into: applied live (upload rate limit, mode, fragment duration),
// applied by restarting the source (driver and capture settings), or
// needing the stream restarted because the ring must be reopened
// (ring_size). Apply never restarts the stream itself: the caller does
// (see package service) when a change says so, so that the open fragment
// is stored first.
func (s *Stream) Apply(st config.Stream) ([]status.Change, error) {
	s.mu.Lock()
	old, global := s.cfg, s.global
	s.mu.Unlock()
	if st.Name != old.Name {
		return nil, status.Errorf(status.CodeBadArgument, "stream %s: cannot rename to %q; a new name is a new stream", old.Name, st.Name)
	}
	if err := validateStream(global, st); err != nil {
		return nil, err
	}
	diff := config.DiffStream(old, st)
	var changes []status.Change
	var restartSource, restartStream, newTarget bool
	for _, d := range diff {
		c := status.Change{Stream: s.name, Key: d.Key, Old: d.Old, New: d.New}
		switch d.Effect {
		case config.EffectLive:
			c.Effect = EffectLive
		case config.EffectRestartFragmenter:
			// The fragmenter takes a new target at once; a camera that
			// encodes itself needs its GOP changed too.
			c.Effect = EffectLive
			newTarget = true
			if st.Driver == config.DriverV4L2 {
				c.Effect = EffectSource
				restartSource = true
			}
		case config.EffectRestartSource:
			c.Effect = EffectSource
			restartSource = true
		default:
			c.Effect = EffectStreamRestart
			restartStream = true
		}
		changes = append(changes, c)
	}
	if len(changes) == 0 {
		return nil, nil
	}
	if restartStream {
		// Nothing is applied piecemeal: the stream is rebuilt with st.
		for i := range changes {
			changes[i].Effect = EffectStreamRestart
		}
		return changes, nil
	}
	s.mu.Lock()
	s.cfg = st
	snd := s.snd
	if restartSource {
		s.srcStale = true
		if s.cancelSrc != nil {
			s.cancelSrc()
		}
	}
	s.mu.Unlock()
	if snd != nil {
		if err := applySenderSettings(snd, st); err != nil {
			return changes, fmt.Errorf("stream %s: %w", s.name, err)
		}
	}
	if newTarget {
		s.fragCommand(fragMsg{target: st.KeyframeInterval.Std()})
	}
	if restartSource {
		s.poke()
	}
	return changes, nil
}

// validateStream checks st the way `kvscamd check` checks a file that
// holds it as its only stream.
func validateStream(global *config.Config, st config.Stream) error {
	c := *global
	c.Streams = []config.Stream{st}
	if err := c.ValidateForRun(); err != nil {
		return status.Errorf(status.CodeInvalidConfig, "stream %s: %v", st.Name, err)
	}
	return nil
}
