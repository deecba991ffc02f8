package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/daemon/sdnotify"
	"github.com/kvscamd/kvscamd/daemon/service"
	"github.com/kvscamd/kvscamd/daemon/status"
)

// serviceNotifier tells the service manager how the daemon is doing:
// READY once it runs, a one-line STATUS, and watchdog pings only while it
// makes progress, so that a wedged daemon is restarted rather than left
// silently recording nothing.
type serviceNotifier struct {
	n    *sdnotify.Notifier
	svc  *service.Service
	log  *slog.Logger
	last uint64 // progress counter at the previous check
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
			st.FramesCaptured, percent(st.RingBytesUsed, st.RingBytesCapacity), st.FragmentsUnacked)
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
// WATCHDOG whenever progress was made since the previous turn. Without a
// watchdog it still refreshes STATUS every statusEvery.
func (s *serviceNotifier) run(ctx context.Context) {
	if !s.n.Enabled() {
		return
	}
	ds := s.svc.Status()
	s.last = progress(ds)
	s.send(sdnotify.Ready, sdnotify.Status(statusLine(ds)))
	every := statusEvery
	wd, watchdog := sdnotify.WatchdogInterval()
	if watchdog {
		every = wd / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.send(sdnotify.Stopping, sdnotify.Status("stopping: storing the open fragments"))
			return
		case <-t.C:
		}
		ds := s.svc.Status()
		msgs := []string{sdnotify.Status(statusLine(ds))}
		if p := progress(ds); watchdog && p != s.last {
			s.last = p
			msgs = append(msgs, sdnotify.Watchdog)
		} else if watchdog {
			s.log.Warn("no progress since the last watchdog period: no frames captured, stored or uploaded", "period", every)
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
