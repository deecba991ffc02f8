package ring

import "sync"

// readBufsKept bounds both the buffers lent out and those kept idle. The
// sender hands each fragment back before it reads the next, so one buffer
// serves it; the second covers a connection's first fragment read while a
// reader such as an upload request holds another. More would only keep
// megabytes idle.
const readBufsKept = 2

// readBufs lends record buffers to readers. A buffer comes back through
// put with the tail of the fragment read into it (a record ends with its
// cluster, so the cluster's last byte is the buffer's). Buffers that are
// never returned drop off the lent list as new ones are lent, and are then
// the garbage collector's; a caller that does not recycle costs an
// allocation per read, as before, never a leak.
type readBufs struct {
	mu   sync.Mutex
	free [][]byte
	lent [][]byte
}

// get returns a buffer of length n.
func (p *readBufs) get(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b []byte
	for i, f := range p.free {
		if cap(f) >= n {
			b = f[:n]
			p.free = append(p.free[:i], p.free[i+1:]...)
			break
		}
	}
	if b == nil {
		if len(p.free) > 0 {
			p.free = p.free[1:] // too small for today's fragments
		}
		// Headroom, so that a slightly larger fragment next time
		// does not need a new buffer.
		b = make([]byte, n, n+n/8)
	}
	if len(p.lent) == readBufsKept {
		p.lent = append(p.lent[:0], p.lent[1:]...)
	}
	p.lent = append(p.lent, b)
	return b
}

// put takes back the buffer whose last byte is tail's.
func (p *readBufs) put(tail []byte) {
	if len(tail) == 0 {
		return
	}
	last := &tail[len(tail)-1]
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.lent {
		if len(b) > 0 && &b[len(b)-1] == last {
			p.lent = append(p.lent[:i], p.lent[i+1:]...)
			if len(p.free) < readBufsKept {
				p.free = append(p.free, b)
			}
			return
		}
	}
}
