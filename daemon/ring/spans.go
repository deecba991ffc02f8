package ring

import "time"

// Span is what the in-memory index knows about one stored record, without
// reading it.
type Span struct {
	ID       ID
	Timecode int64 // epoch ms, or ms since boot for a fragment whose wall time is unknown
	Duration time.Duration
	Acked    bool
}

// Spans calls fn for every stored record in id order until fn returns
// false. It reads only the index; fn runs with the ring locked and must
// not call the ring.
func (r *Ring) Spans(fn func(Span) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.entries {
		e := &r.entries[i]
		if !fn(Span{ID: e.id, Timecode: e.tc, Duration: e.dur, Acked: e.acked}) {
			return
		}
	}
}
