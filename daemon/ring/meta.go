package ring

import "time"

// Meta describes a stored fragment from the ring's in-memory index,
// without reading it from disk.
type Meta struct {
	ID       ID
	Start    time.Time
	Duration time.Duration
	// Size is the stored record's payload (header and cluster encoded),
	// a close upper bound of what uploading the fragment sends.
	Size  int64
	Acked bool
}

// End is when the fragment's media ends.
func (m Meta) End() time.Time { return m.Start.Add(m.Duration) }

// Metas calls fn for the stored fragments with id >= from, in id order,
// until fn returns false. It lets a scheduler look over the backlog
// cheaply. fn runs with the ring locked: it must be quick and must not
// call the ring.
func (r *Ring) Metas(from ID, fn func(Meta) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := r.search(from); i < len(r.entries); i++ {
		e := &r.entries[i]
		if !fn(Meta{ID: e.id, Start: e.start(), Duration: e.dur, Size: int64(e.plen), Acked: e.acked}) {
			return
		}
	}
}

// LastMeta returns the newest stored fragment's description; false when
// the ring is empty.
func (r *Ring) LastMeta() (Meta, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.entries)
	if n == 0 {
		return Meta{}, false
	}
	e := &r.entries[n-1]
	return Meta{ID: e.id, Start: e.start(), Duration: e.dur, Size: int64(e.plen), Acked: e.acked}, true
}
