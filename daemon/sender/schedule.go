package sender

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
)

// Upload orders (config upload_order).
const (
	// OrderLiveFirst keeps live video current: new fragments go out as
	// they are made, and a backlog drains oldest first in the spare
	// capacity, in connections of its own between live slices.
	OrderLiveFirst = "live-first"
	// OrderInOrder uploads strictly oldest first: after an outage live
	// video waits behind the whole backlog.
	OrderInOrder = "in-order"
)

func checkOrder(order string) error {
	switch order {
	case OrderLiveFirst, OrderInOrder:
		return nil
	}
	return fmt.Errorf("upload order %q: use %q or %q", order, OrderLiveFirst, OrderInOrder)
}

// metaStore is what live-first scheduling needs on top of Store: a cheap
// look at the stored fragments' times without reading them. *ring.Ring
// implements it; a Store without it is uploaded in order.
type metaStore interface {
	Metas(from ring.ID, fn func(ring.Meta) bool)
	LastMeta() (ring.Meta, bool)
}

var _ metaStore = (*ring.Ring)(nil)

// connKind is what a connection carries.
type connKind int

const (
	// kindLive follows the ring from the live cursor upward.
	kindLive connKind = iota
	// kindBacklog sends the backlog (ids below the live cursor) oldest
	// first and yields to live video.
	kindBacklog
	// kindRetry sends fragments set aside whose retry time has come.
	kindRetry
)

func (k connKind) String() string {
	switch k {
	case kindLive:
		return "live"
	case kindBacklog:
		return "backlog"
	case kindRetry:
		return "set-aside retry"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// plan is what the next connection carries and where it starts.
type plan struct {
	kind connKind
	from ring.ID
	// lag is how far behind the newest fragment a live connection may
	// fall before it leaves fragments to the backlog: MaxLiveLag when
	// zero or smaller, more when the connection takes over from a
	// backlog slice (see yieldedToLive).
	lag time.Duration
}

// errSliceDone ends a backlog or retry connection that has nothing more
// to send.
var errSliceDone = errors.New("backlog slice done")

func (s *Sender) liveFirst() bool { return s.meta != nil && s.cfg.UploadOrder == OrderLiveFirst }

// sendableLocked reports whether the fragment m may go out on a
// connection of kind k. s.mu is held.
func (s *Sender) sendableLocked(m ring.Meta, k connKind, now time.Time) bool {
	if m.Acked {
		return false
	}
	if _, ok := s.acked[m.ID]; ok {
		return false
	}
	a, aside := s.aside[m.ID]
	if k == kindRetry {
		return aside && !now.Before(a.NextTry)
	}
	return !aside
}

// candidate returns the first fragment at or after from that a connection
// of kind k would send next, without reading it. For the backlog only ids
// below the live cursor count.
func (s *Sender) candidate(from ring.ID, k connKind) (ring.ID, bool) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var id ring.ID
	found := false
	s.meta.Metas(from, func(m ring.Meta) bool {
		if k == kindBacklog && m.ID >= s.liveFrom {
			return false
		}
		if s.sendableLocked(m, k, now) {
			id, found = m.ID, true
			return false
		}
		return true
	})
	return id, found
}

// advanceLive moves the live cursor up to the live edge: the first
// fragment that ends within lag (MaxLiveLag, see plan.lag) of the newest
// one's end. What the cursor passes over without having sent it becomes
// backlog. This is how live video stays current when a backlog exists,
// and how, when the link cannot carry live video, the fragments it could
// not carry join the backlog instead of holding up the newest ones. It
// returns the cursor and whether it moved.
func (s *Sender) advanceLive(lag time.Duration) (ring.ID, bool) {
	last, ok := s.meta.LastMeta()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		return s.liveFrom, false
	}
	edge := last.End().Add(-lag)
	newFrom := s.liveFrom
	s.meta.Metas(s.liveFrom, func(m ring.Meta) bool {
		if !m.End().Before(edge) {
			newFrom = m.ID
			return false
		}
		return true
	})
	moved := newFrom > s.liveFrom
	if moved {
		s.liveFrom = newFrom
	}
	return s.liveFrom, moved
}

// liveCursor returns the live cursor.
func (s *Sender) liveCursor() ring.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveFrom
}

// nextPlan decides what the next connection carries (live upload order
// and mode): live video when any is waiting, else the backlog oldest
// first, else set-aside fragments due for a retry, else it waits for live
// video. The bool is false in that last case.
func (s *Sender) nextPlan() (plan, bool) {
	s.mu.Lock()
	at, restart := s.restartAt, s.restartSet
	s.restartSet = false
	_, aside := s.aside[at]
	s.mu.Unlock()
	if restart && !aside && !s.isAcked(at) {
		// After a 4004 the refused fragment opens the next connection;
		// fragments before it that were not stored yet follow in a
		// connection of their own.
		k := kindLive
		if s.liveFirst() && at < s.liveCursor() {
			k = kindBacklog
		}
		return plan{kind: k, from: at}, true
	}
	if s.meta == nil {
		return plan{kind: kindLive, from: s.resumePoint()}, true
	}
	if !s.liveFirst() {
		// In order: everything from the first unacknowledged fragment,
		// then the set-aside ones when their time comes.
		from := s.resumePoint()
		if id, ok := s.candidate(from, kindLive); ok {
			return plan{kind: kindLive, from: id}, true
		}
		if id, ok := s.candidate(from, kindRetry); ok {
			return plan{kind: kindRetry, from: id}, true
		}
		return plan{kind: kindLive, from: max(from, s.indexEnd(from))}, false
	}
	s.resumePoint() // trims the acked set
	lag := s.cfg.MaxLiveLag
	if s.takeYield() {
		// The live video waiting now waited for the slice this sender
		// chose to give the backlog, not because the link could not
		// carry it: it goes out, and only falling further behind from
		// here leaves fragments to the backlog. Otherwise the switch
		// itself (the slice's last fragment in flight, a new connection)
		// would push the oldest live fragments past the edge, and they
		// would wait for the whole backlog instead of a few seconds.
		lag = max(lag, s.liveBehind()+s.cfg.MaxLiveLag/2)
	}
	cursor, _ := s.advanceLive(lag)
	first, ok := s.cfg.Ring.FirstUnacked()
	if turn, given := s.takeTurn(); given && ok {
		// The live connection ended to give this slice its turn.
		if id, ok := s.candidate(first, turn); ok {
			return plan{kind: turn, from: id}, true
		}
	}
	if id, ok := s.candidate(cursor, kindLive); ok {
		return plan{kind: kindLive, from: id, lag: lag}, true
	}
	if ok {
		if id, ok := s.candidate(first, kindBacklog); ok {
			return plan{kind: kindBacklog, from: id}, true
		}
		if id, ok := s.candidate(first, kindRetry); ok {
			return plan{kind: kindRetry, from: id}, true
		}
	}
	return plan{kind: kindLive, from: max(cursor, s.indexEnd(cursor))}, false
}

// yieldedToLive records that a backlog or retry slice ended because live
// video waited; the next plan gives that video its lag (see nextPlan).
func (s *Sender) yieldedToLive() {
	s.mu.Lock()
	s.yielded = true
	s.mu.Unlock()
}

// takeYield returns and clears what yieldedToLive recorded.
func (s *Sender) takeYield() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	y := s.yielded
	s.yielded = false
	return y
}

// liveBehind is how far the first live fragment waiting to go out ends
// before the newest stored one; zero when none waits.
func (s *Sender) liveBehind() time.Duration {
	last, ok := s.meta.LastMeta()
	if !ok {
		return 0
	}
	m, ok := s.liveCandidate()
	if !ok {
		return 0
	}
	return max(last.End().Sub(m.End()), 0)
}

// giveTurn makes k the next connection's kind (see Sender.turn).
func (s *Sender) giveTurn(k connKind) {
	s.mu.Lock()
	s.turn, s.turnSet = k, true
	s.mu.Unlock()
}

// takeTurn returns and clears the kind given by giveTurn.
func (s *Sender) takeTurn() (connKind, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.turn, s.turnSet
	s.turnSet = false
	return k, ok
}

// indexEnd is one past the newest fragment in the ring's index, or from
// when the ring is empty. Unlike Ring.NextID it never counts an append
// still being written, whose fragment is not in the index yet and must
// not be passed over.
func (s *Sender) indexEnd(from ring.ID) ring.ID {
	if last, ok := s.meta.LastMeta(); ok {
		return last.ID + 1
	}
	return from
}

// liveWaiting reports whether a live fragment is ready to go and how long
// it has waited: since it was complete by the clock (its end), or since
// this slice first saw it, whichever is longer, so that neither a clock
// step nor the time the slice took to open hides the wait. A backlog
// slice yields on it.
func (s *Sender) liveWaiting() (bool, time.Duration) {
	m, ok := s.liveCandidate()
	now := time.Now()
	age := s.cfg.Clock.Now().Sub(m.End())
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.liveReadySince = time.Time{}
		return false, 0
	}
	if s.liveReadySince.IsZero() {
		s.liveReadySince = now
	}
	return true, max(now.Sub(s.liveReadySince), age)
}

// startSlice begins a backlog or retry slice: the live video it yields
// to is timed from now on, not from what an earlier slice saw.
func (s *Sender) startSlice() {
	s.mu.Lock()
	s.liveReadySince = time.Time{}
	s.mu.Unlock()
}

// hasBacklog reports whether fragments below the live cursor wait.
func (s *Sender) hasBacklog() bool {
	first, ok := s.cfg.Ring.FirstUnacked()
	if !ok {
		return false
	}
	_, ok = s.candidate(first, kindBacklog)
	return ok
}

// retryDue reports whether a set-aside fragment still in the ring is due
// for its retry.
func (s *Sender) retryDue() bool {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	due := false
	for _, a := range s.aside {
		if !now.Before(a.NextTry) {
			due = true
			break
		}
	}
	s.mu.Unlock()
	if !due {
		return false // without walking the ring's index
	}
	first, ok := s.cfg.Ring.FirstUnacked()
	if !ok {
		return false
	}
	_, ok = s.candidate(first, kindRetry)
	return ok
}

// backlogStats sums up the backlog (unacknowledged fragments below the
// live cursor, set-aside ones not counted) and the set-aside fragments
// still in the ring.
func (s *Sender) backlogStats(now time.Time) (n int, bytes int64, oldest time.Time, aside int, asideOldest time.Time) {
	first, ok := s.cfg.Ring.FirstUnacked()
	if !ok || s.meta == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.meta.Metas(first, func(m ring.Meta) bool {
		if _, ok := s.aside[m.ID]; ok && !m.Acked {
			aside++
			if asideOldest.IsZero() {
				asideOldest = m.Start
			}
			return true
		}
		if m.ID >= s.liveFrom {
			return aside < len(s.aside) // nothing more to count once past both
		}
		if s.sendableLocked(m, kindBacklog, now) {
			n++
			bytes += m.Size
			if oldest.IsZero() {
				oldest = m.Start
			}
		}
		return true
	})
	return
}

// liveCandidate describes the first fragment a live connection would
// send.
func (s *Sender) liveCandidate() (ring.Meta, bool) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out ring.Meta
	found := false
	s.meta.Metas(s.liveFrom, func(m ring.Meta) bool {
		if s.sendableLocked(m, kindLive, now) {
			out, found = m, true
			return false
		}
		return true
	})
	return out, found
}

// nextAsideDue is when the earliest set-aside fragment is due for a
// retry; zero when none is set aside.
func (s *Sender) nextAsideDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, a := range s.aside {
		if t.IsZero() || a.NextTry.Before(t) {
			t = a.NextTry
		}
	}
	return t
}

func (s *Sender) isAside(id ring.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.aside[id]
	return ok
}
