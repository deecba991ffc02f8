package media

import "sync"

// FramePool recycles the memory of access units between a source and the
// stage that copies them out (the fragmenter copies every frame into its
// cluster buffer at once). Without it a 4 Mbit/s stream hands the garbage
// collector half a megabyte a second, one allocation per frame, and the
// collector's work and the heap's headroom grow with the bitrate.
//
// Ownership: a source takes a FrameMem with Get, fills it and attaches it
// to the Frame it sends (Attach). Whoever receives the frame owns it; once
// it no longer reads NALUs it calls Release, which gives the memory back
// for a later frame. A frame that is dropped or kept is simply never
// released: its memory then goes to the garbage collector as before, so a
// consumer that does not know about pools stays correct. Releasing twice,
// or reading NALUs after Release, is a bug.
//
// The pool holds at most its capacity of idle buffers; when it is empty
// (a slow consumer with a full queue) Get allocates, so a source never
// waits for memory. Buffers keep the capacity of the largest access unit
// they held. Get hands out the buffer given back last: with a consumer
// that keeps up, the same few buffers (one batch of frames) go round and
// the others stay small; in first-out order every idle buffer would in
// turn carry a key frame and grow to its size.
type FramePool struct {
	mu   sync.Mutex
	free []*FrameMem // a stack: the last given back is the next handed out
}

// FrameMem is one pooled access unit: its bytes and the NAL unit slices
// into them.
type FrameMem struct {
	Data  []byte
	NALUs [][]byte
	pool  *FramePool
}

// DefaultFramePoolSize is enough idle buffers for a consumer that keeps up:
// a frame in the source, a few in the queue, one being copied.
const DefaultFramePoolSize = 8

// NewFramePool returns a pool that keeps up to n idle buffers.
func NewFramePool(n int) *FramePool {
	return &FramePool{free: make([]*FrameMem, 0, max(n, 1))}
}

// Get returns a buffer with Data and NALUs empty; a nil pool allocates.
func (p *FramePool) Get() *FrameMem {
	if p != nil {
		p.mu.Lock()
		if n := len(p.free); n > 0 {
			m := p.free[n-1]
			p.free[n-1] = nil
			p.free = p.free[:n-1]
			p.mu.Unlock()
			return m
		}
		p.mu.Unlock()
	}
	return &FrameMem{pool: p}
}

// Attach makes m the memory of f; m's NALUs become f's.
func (f *Frame) Attach(m *FrameMem) {
	f.NALUs = m.NALUs
	f.mem = m
}

// Release gives the frame's pooled memory back and clears NALUs. It does
// nothing for a frame whose memory is not pooled.
func (f *Frame) Release() {
	m := f.mem
	f.mem, f.NALUs = nil, nil
	m.Free()
}

// Free gives m back to its pool, for a source that drops an access unit
// before it is attached to a frame. A nil or unpooled m is left alone.
func (m *FrameMem) Free() {
	if m == nil || m.pool == nil {
		return
	}
	clear(m.NALUs) // no stale slices into the next frame's bytes
	m.Data, m.NALUs = m.Data[:0], m.NALUs[:0]
	p := m.pool
	p.mu.Lock()
	if len(p.free) < cap(p.free) {
		p.free = append(p.free, m)
	} // else enough idle buffers; this one goes to the collector
	p.mu.Unlock()
}
