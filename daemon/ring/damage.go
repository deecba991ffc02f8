package ring

import (
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Damage (a record whose checksum fails, a header that cannot be parsed)
// is reported once, at Warn level, with what was lost, and then cleared:
// the damaged bytes are zeroed (punched where the filesystem can), which
// every later walk treats as freed space, and a sealed segment's index is
// rewritten without the record. So the same damage is not reported again
// at every start, and a damaged record never stays behind as a stored,
// unacknowledged fragment that eviction would later count as lost video.
// A read-only view reports but writes nothing. Read errors from the device
// are not cleared: they may be transient, and the data may come back.

// clearRange zeroes [off, off+n) of s durably. Caller holds r.mu or owns s
// exclusively (recovery).
func (r *Ring) clearRange(s *segment, off, n int64) {
	if r.opts.ReadOnly || n <= 0 || s.f == nil {
		return
	}
	var err error
	if r.canPunch {
		err = punchHole(s.f, off, n)
	}
	if !r.canPunch || err != nil {
		_, err = s.f.WriteAt(make([]byte, n), off)
		r.written.Add(uint64(n))
	}
	if err == nil {
		err = datasync(s.f)
	}
	if err != nil {
		r.log.Warn("ring: cannot clear damaged data; it will be reported again at the next start", "segment", s.path, "offset", off, "err", err)
	}
}

// reportDamagedRecord reports one record that failed verification.
func (r *Ring) reportDamagedRecord(e *entry, acked bool, err error) {
	r.st.CorruptSkipped++
	r.log.Warn("ring: damaged record dropped; this fragment is lost and will not be uploaded",
		"fragments", 1, "from", e.start(), "to", e.end(), "id", e.id, "acked", acked,
		"segment", e.seg.path, "offset", e.off, "err", err)
}

// reportDamagedRegion reports bytes between two good records whose headers
// cannot be read: the number of fragments in there is unknown, their time
// lies between the neighbours'.
func (r *Ring) reportDamagedRegion(s *segment, from, to int64, after ID, afterEnd, beforeStart time.Time) {
	r.st.CorruptSkipped++
	attrs := []any{"segment", s.path, "offset", from, "bytes", to - from, "after_id", after}
	if !afterEnd.IsZero() {
		attrs = append(attrs, "from", afterEnd)
	}
	if !beforeStart.IsZero() {
		attrs = append(attrs, "to", beforeStart)
	}
	r.log.Warn("ring: damaged data in a segment dropped; the fragments stored there (at least one) are lost and will not be uploaded", attrs...)
}

// verifyLocked reports whether e's payload still matches its checksum;
// eviction uses it so that damage is not counted as lost video.
func (r *Ring) verifyLocked(e *entry) bool {
	if e.seg.f == nil {
		return true
	}
	err := r.checkLocked(e)
	return err == nil || !(errors.Is(err, errCorrupt) || errors.Is(err, errHole))
}

// verifyChunk is how much of a record checkLocked reads at a time.
const verifyChunk = 64 << 10

// checkLocked checks a record's header and checksum the way read does,
// through a small scratch buffer: eviction checks every unacknowledged
// record it drops, and reading each whole (a megabyte at 4 Mbit/s) under
// the lock cost as much memory as the upload path. A record whose
// checksum matches holds the bytes Append wrote, so it is not decoded.
func (r *Ring) checkLocked(e *entry) error {
	if cap(r.vbuf) < verifyChunk {
		r.vbuf = make([]byte, verifyChunk)
	}
	b := r.vbuf[:verifyChunk]
	if _, err := e.seg.f.ReadAt(b[:recHeaderSize], e.off); err != nil {
		return fmt.Errorf("read %s at %d: %w", e.seg.path, e.off, err)
	}
	if err := e.checkHeader(b[:recHeaderSize]); err != nil {
		return err
	}
	var sum uint32
	for off, left := e.off+recHeaderSize, int64(e.plen); left > 0; {
		n := min(left, int64(len(b)))
		if _, err := e.seg.f.ReadAt(b[:n], off); err != nil {
			return fmt.Errorf("read %s at %d: %w", e.seg.path, off, err)
		}
		sum = crc32.Update(sum, castagnoli, b[:n])
		off, left = off+n, left-n
	}
	if sum != e.pcrc {
		return fmt.Errorf("%w: payload checksum mismatch", errCorrupt)
	}
	return nil
}
