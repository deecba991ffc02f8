package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/daemon/heartbeat"
	"github.com/kvscamd/kvscamd/daemon/sdnotify"
	"github.com/kvscamd/kvscamd/daemon/status"
)

// serviceNotifier tells the service manager how the daemon is doing:
// READY once it runs, a one-line STATUS, and watchdog pings while every
// stage loop is alive (heartbeat). A stage stuck for longer than half the
// watchdog timeout stops the pings, so that a hung daemon is restarted;
// video that does not flow (no camera, no network, no clock) is a
// data-flow problem reported in STATUS and the logs, never by a restart.
type serviceNotifier struct {
	n    *sdnotify.Notifier
	svc  statuser
	hb   *heartbeat.Monitor
	log  *slog.Logger
	last uint64 // progress counter at the previous check
}

// statuser is what the notifier reads the daemon's state from.
type statuser interface {
	Status() status.Status
	Ready() <-chan struct{}
}

// progress sums counters that grow whenever any stage moves: frames
// captured, fragments stored, fragments acknowledged by the service.
func progress(ds status.Status) uint64 {
	var n uint64
	for _, st := range ds.Streams {
		n += st.FramesCaptured + st.FragmentsStored + st.FragmentsAcked
	}
	return n
}

// status is the one-line state systemctl status shows.
func statusLine(ds status.Status) string {
	var parts []string
	for _, st := range ds.Streams {
		line := fmt.Sprintf("%s: %d frames, ring %d%% (%d fragments not uploaded)", st.Name,
			st.FramesCaptured, percent(st.RingBytesUsed, ringRoom(st)), st.FragmentsUnacked)
		switch {
		case st.Uploader.Alert != "":
			line += ", needs attention: " + st.Uploader.Alert
		case st.Uploader.State != "":
			line += ", " + st.Uploader.State
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

func percent(a, b int64) int64 {
	if b <= 0 {
		return 0
	}
	return a * 100 / b
}

// run sends READY and then, until ctx ends, STATUS every interval and
// WATCHDOG whenever no stage is stuck. Without a watchdog it still
// refreshes STATUS every statusEvery.
func (s *serviceNotifier) run(ctx context.Context) {
	if !s.n.Enabled() {
		return
	}
	select {
	case <-s.svc.Ready():
	case <-ctx.Done():
		return
	}
	ds := s.svc.Status()
	s.last = progress(ds)
	s.send(sdnotify.Ready, sdnotify.Status(statusLine(ds)))
	every := statusEvery
	wd, watchdog := sdnotify.WatchdogInterval()
	if watchdog {
		// Pings at a quarter of the timeout leave one spare period; a
		// stage counts as stuck after half of it.
		every = wd / 4
	}
	t := time.NewTicker(every)
	defer t.Stop()
	wasStuck := false
	for {
		select {
		case <-ctx.Done():
			s.send(sdnotify.Stopping, sdnotify.Status("stopping: storing the open fragments"))
			return
		case <-t.C:
		}
		ds := s.svc.Status()
		line := statusLine(ds)
		if p := progress(ds); p == s.last {
			line = "no progress (no frames captured, stored or uploaded); " + line
		} else {
			s.last = p
		}
		var stuck []heartbeat.Stuck
		if watchdog {
			stuck = s.hb.Stuck(wd / 2)
		}
		if len(stuck) > 0 {
			names := make([]string, len(stuck))
			for i, st := range stuck {
				names[i] = st.String()
			}
			line = "STUCK " + strings.Join(names, ", ") + "; " + line
			if !wasStuck {
				s.log.Error("a stage loop is stuck; no more watchdog pings, the service manager will restart kvscamd",
					"stuck", strings.Join(names, ", "), "limit", wd/2)
			}
			wasStuck = true
			s.send(sdnotify.Status(line))
			continue
		}
		if wasStuck {
			s.log.Warn("stuck stages recovered; watchdog pings resume")
			wasStuck = false
		}
		msgs := []string{sdnotify.Status(line)}
		if watchdog {
			msgs = append(msgs, sdnotify.Watchdog)
		}
		s.send(msgs...)
	}
}

// statusEvery is how often STATUS is refreshed when there is no watchdog.
const statusEvery = 10 * time.Second

func (s *serviceNotifier) send(states ...string) {
	if err := s.n.Notify(states...); err != nil {
		s.log.Warn("cannot notify the service manager", "err", err)
	}
}
