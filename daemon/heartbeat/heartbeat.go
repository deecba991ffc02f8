// Package heartbeat tells whether every stage loop of the daemon is alive,
// which is what the service manager's watchdog is fed with. "Alive" means
// the loop keeps turning, not that video flows: a camera that is
// unplugged, a network that is down or a clock that is not synchronised
// leave the loops waiting, which is healthy. A loop is stuck when it
// started a piece of work (a write, a hand-over to another stage) and has
// not come back for longer than a limit, e.g. a write hung on a dying SD
// card or a deadlock.
//
// Each stage loop registers a Stage and calls Beat at every turn and Idle
// before a wait that its context can end (a timer, a channel of new work,
// a driver that waits for its device). Between a Beat and the next Idle
// the stage is working, and working too long is being stuck. A nil
// *Monitor hands out nil *Stage values whose methods do nothing, so code
// runs the same without a watchdog.
//
// Stages are reached through the context as well (NewContext,
// FromContext), so that a stage can hand its Stage to code it calls (a
// driver, the uploader), which then beats for it.
package heartbeat

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Monitor keeps the stages that are registered now. Safe for concurrent
// use.
type Monitor struct {
	base time.Time // monotonic origin of the stages' beat times
	now  func() time.Time

	mu     sync.Mutex
	stages map[*Stage]struct{}

	stallName string        // test hook: the stage to stall, armed
	stalled   chan struct{} // closed when the armed stage stalled
	release   chan struct{} // tests only: ends a stall
}

// New returns a Monitor on the system clock.
func New() *Monitor { return newMonitor(time.Now) }

func newMonitor(now func() time.Time) *Monitor {
	return &Monitor{base: now(), now: now, stages: map[*Stage]struct{}{}, release: make(chan struct{})}
}

// Stage is one registered loop. Its methods are safe for concurrent use
// and do nothing on a nil Stage.
type Stage struct {
	m    *Monitor
	name string
	last atomic.Int64 // m.since() at the last Beat
	idle atomic.Bool
}

// Register adds a stage called name (e.g. "cam-1/fragmenter"), counted as
// having just beaten. Close it when its loop ends. Several stages may
// share a name.
func (m *Monitor) Register(name string) *Stage {
	if m == nil {
		return nil
	}
	s := &Stage{m: m, name: name}
	s.last.Store(m.since())
	m.mu.Lock()
	m.stages[s] = struct{}{}
	m.mu.Unlock()
	return s
}

func (m *Monitor) since() int64 { return int64(m.now().Sub(m.base)) }

// Name returns the stage's name.
func (s *Stage) Name() string {
	if s == nil {
		return ""
	}
	return s.name
}

// Beat says the loop made a turn and is now working.
func (s *Stage) Beat() {
	if s == nil {
		return
	}
	s.last.Store(s.m.since())
	s.idle.Store(false)
	s.m.maybeStall(s)
}

// Idle says the loop now waits for something its context can end; it
// counts as alive until its next Beat, however long the wait.
func (s *Stage) Idle() {
	if s == nil {
		return
	}
	s.idle.Store(true)
}

// Close unregisters the stage.
func (s *Stage) Close() {
	if s == nil {
		return
	}
	s.m.mu.Lock()
	delete(s.m.stages, s)
	s.m.mu.Unlock()
}

// Stuck is a stage that has been working longer than the limit.
type Stuck struct {
	Name string
	For  time.Duration // since its last beat
}

func (s Stuck) String() string {
	return fmt.Sprintf("%s for %s", s.Name, s.For.Round(100*time.Millisecond))
}

// Stuck returns the stages working for longer than limit, longest first;
// none means every registered loop is alive.
func (m *Monitor) Stuck(limit time.Duration) []Stuck {
	if m == nil {
		return nil
	}
	now := m.since()
	var out []Stuck
	m.mu.Lock()
	for s := range m.stages {
		if s.idle.Load() {
			continue
		}
		if d := time.Duration(now - s.last.Load()); d > limit {
			out = append(out, Stuck{Name: s.name, For: d})
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].For > out[j].For })
	return out
}

// Len returns how many stages are registered.
func (m *Monitor) Len() int {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.stages)
}

type ctxKey struct{}

// NewContext returns ctx carrying s, for code that beats on the stage's
// behalf.
func NewContext(ctx context.Context, s *Stage) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// FromContext returns the stage ctx carries, or nil.
func FromContext(ctx context.Context) *Stage {
	s, _ := ctx.Value(ctxKey{}).(*Stage)
	return s
}
