package fragmenter

import "time"

// OpenReached reports whether the open fragment, closed before the next
// frame, would last at least d, with the same half-frame slack as the
// cut at the target; false when no fragment is open. A stopping stream
// uses it to decide whether its last fragment is long enough to upload.
func (f *Fragmenter) OpenReached(d time.Duration) bool {
	if !f.open {
		return false
	}
	end := f.last + max(f.lastDelta, 1)
	return end-f.first+f.lastDelta/2 >= d.Milliseconds()
}
