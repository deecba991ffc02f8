package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a Clock driven by hand, for tests: time moves only through
// Advance, Step and Set, and a wait ends when the clock is moved past its
// deadline. Its zero value is not usable; use NewFake.
type Fake struct {
	mu      sync.Mutex
	changed *sync.Cond // broadcast when waiters are added
	wall    time.Time
	mono    time.Duration
	synced  bool
	auto    bool
	waiters []waiter
}

type waiter struct {
	at time.Duration // on the monotonic clock
	ch chan time.Time
}

// NewFake returns a synchronised Fake reading wall, with the monotonic
// clock at zero.
func NewFake(wall time.Time) *Fake {
	f := &Fake{wall: wall, synced: true}
	f.changed = sync.NewCond(&f.mu)
	return f
}

// Now implements Clock.
func (f *Fake) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.wall }

// Mono implements Clock.
func (f *Fake) Mono() time.Duration { f.mu.Lock(); defer f.mu.Unlock(); return f.mono }

// Synced implements Clock.
func (f *Fake) Synced() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.synced }

// After implements Clock. Waits are measured on the monotonic clock, as
// time.Timer's are, so Step and Set do not end them.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1) // buffered: firing never blocks the test
	if d <= 0 {
		ch <- f.wall
		return ch
	}
	if f.auto {
		f.advanceLocked(d)
		ch <- f.wall
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: f.mono + d, ch: ch})
	f.changed.Broadcast()
	return ch
}

// AutoAdvance makes every later wait move the clock forward by its own
// length and end at once, for code that only paces itself (rate limits,
// retry back-off): the test then reads how much time the waits took
// without waiting for it.
func (f *Fake) AutoAdvance() { f.mu.Lock(); defer f.mu.Unlock(); f.auto = true }

// Advance lets d pass on both clocks and ends the waits that are due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(d)
}

func (f *Fake) advanceLocked(d time.Duration) {
	f.mono += d
	f.wall = f.wall.Add(d)
	// Fire in deadline order, so a receiver sees the same order as with
	// real timers.
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at < f.waiters[j].at })
	n := 0
	for _, w := range f.waiters {
		if w.at > f.mono {
			break
		}
		w.ch <- f.wall
		n++
	}
	f.waiters = append(f.waiters[:0], f.waiters[n:]...)
}

// Step moves the wall clock by d, as settimeofday or an NTP step does;
// the monotonic clock and pending waits are unaffected.
func (f *Fake) Step(d time.Duration) { f.mu.Lock(); defer f.mu.Unlock(); f.wall = f.wall.Add(d) }

// Set puts the wall clock at t, like Step.
func (f *Fake) Set(t time.Time) { f.mu.Lock(); defer f.mu.Unlock(); f.wall = t }

// SetSynced changes what Synced reports.
func (f *Fake) SetSynced(s bool) { f.mu.Lock(); defer f.mu.Unlock(); f.synced = s }

// Waiting returns how many waits have not ended yet; a wait abandoned by
// its receiver (Sleep whose context ended) still counts until it is due.
func (f *Fake) Waiting() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.waiters) }

// BlockUntil returns once at least n waits are pending, so that a test
// advances the clock only after the code under test has started waiting.
func (f *Fake) BlockUntil(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.waiters) < n {
		f.changed.Wait()
	}
}
