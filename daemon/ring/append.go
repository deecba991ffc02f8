package ring

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// Append stores f durably: it returns after the record is written and
// fdatasync'd, with the record's id. It makes room first (see the package
// documentation for the eviction order). On a write error (a full disk, an
// I/O error) it returns an error naming the ring's directory; nothing
// already stored is affected and the next Append tries again, so capture
// resumes as soon as space returns. The id of a failed Append is not reused.
func (r *Ring) Append(f *fragmenter.Fragment) (ID, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.opts.ReadOnly {
		return 0, ErrReadOnly
	}
	// The record is written in three pieces (record header and fragment
	// prefix, the stream header, the cluster) so that the cluster, about a
	// megabyte at 4 Mbit/s, is neither copied nor held twice. The record
	// header is filled in once the id and segment are known.
	if cap(r.wbuf) < recHeaderSize {
		r.wbuf = make([]byte, 0, recHeaderSize+128)
	}
	buf, err := f.AppendPrefix(r.wbuf[:recHeaderSize])
	if err != nil {
		return 0, fmt.Errorf("ring: append to %s: %w", r.dir, err)
	}
	r.wbuf = buf
	pieces := [3][]byte{buf, f.Header, f.Cluster}
	recLen := int64(len(buf) + len(f.Header) + len(f.Cluster))
	if need := segHeaderSize + recLen + blockSize + 2*r.ackLogSize; roundUp(need, blockSize)+blockSize > r.opts.Capacity {
		return 0, fmt.Errorf("%w: %s: a %d-byte fragment needs a ring of at least %d bytes; raise ring_size or shorten keyframe_interval",
			ErrTooLarge, r.dir, recLen-recHeaderSize, roundUp(need, blockSize)+blockSize)
	}
	sum := crc(buf[recHeaderSize:])
	sum = crc32.Update(sum, castagnoli, f.Header)
	sum = crc32.Update(sum, castagnoli, f.Cluster)
	h := recHeader{
		Len:      uint32(recLen - recHeaderSize),
		Timecode: f.Timecode,
		Duration: f.Duration,
		CRC:      sum,
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, ErrClosed
	}
	h.ID = r.nextID
	r.nextID++
	r.expireLocked()
	seg, err := r.roomLocked(recLen)
	if err != nil {
		r.st.AppendErrors++
		r.mu.Unlock()
		return 0, err
	}
	off := seg.used
	r.mu.Unlock()

	h.Seq = seg.seq
	h.put(buf)
	at := off
	for _, p := range pieces {
		if err == nil && len(p) > 0 {
			var n int
			n, err = seg.f.WriteAt(p, at)
			at += int64(n)
		}
	}
	if err == nil {
		err = datasync(seg.f)
	}
	r.written.Add(uint64(at - off))
	if err != nil {
		r.appendFailed(seg, off, err)
		return 0, fmt.Errorf("ring: append %d bytes to %s: %w; %s", recLen, seg.path, err, fixFor(err, r.dir))
	}

	r.mu.Lock()
	r.entries = append(r.entries, entry{
		id: h.ID, seg: seg, off: off, plen: h.Len, pcrc: h.CRC, tc: h.Timecode, dur: h.Duration,
	})
	seg.used = off + recLen
	seg.count++
	seg.unacked++
	seg.newest = max(seg.newest, f.End().UnixMilli())
	r.st.BytesAppended += uint64(h.Len)
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	// After the fdatasync: a line here means the fragment is durable (the
	// power-cut test relies on that).
	r.log.Debug("ring: stored", "id", h.ID, "timecode", h.Timecode, "bytes", recLen)
	return h.ID, nil
}

// fixFor says what an operator can do about a write error.
func fixFor(err error, dir string) string {
	if isNoSpace(err) {
		return "free space on the filesystem holding " + dir + " or lower ring_size; capture resumes once space is available"
	}
	return "check the storage device holding " + dir + " (dmesg)"
}

// appendFailed leaves the segment as if the failed record had never been
// written: a partial record could otherwise be found by a later recovery.
// If even that fails the segment is sealed where its good data ends.
func (r *Ring) appendFailed(seg *segment, off int64, werr error) {
	var err error
	if seg.prealloc {
		_, err = seg.f.WriteAt(make([]byte, recHeaderSize), off)
		if err == nil {
			err = datasync(seg.f)
		}
	} else {
		err = seg.f.Truncate(off)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.AppendErrors++
	if err != nil {
		r.log.Error("ring: cannot undo a failed append; sealing the segment", "segment", seg.path, "offset", off, "err", err)
		r.sealLocked(seg)
	}
	r.log.Error("ring: append failed", "segment", seg.path, "err", werr, "fix", fixFor(werr, r.dir))
}

// roomLocked returns the segment a record of recLen bytes goes into,
// sealing the active segment, evicting and creating a new one as needed.
func (r *Ring) roomLocked(recLen int64) (*segment, error) {
	act := r.activeLocked()
	if act != nil && act.used+recLen <= act.size {
		// The record fits; only the active segment's future index grows.
		grow := roundUp(idxFileSize(act.count+1), blockSize) - roundUp(idxFileSize(act.count), blockSize)
		if err := r.makeRoomLocked(grow); err != nil {
			return nil, err
		}
		return act, nil
	}
	if act != nil {
		r.sealLocked(act)
	}
	return r.newSegmentLocked(recLen)
}

// activeLocked returns the segment appends go to, or nil if a new one is
// needed.
func (r *Ring) activeLocked() *segment {
	if n := len(r.segs); n > 0 && !r.segs[n-1].sealed {
		return r.segs[n-1]
	}
	return nil
}

// createSegmentLocked creates, preallocates and registers a new segment.
func (r *Ring) createSegmentLocked(size int64) (*segment, error) {
	seq := r.lastSeq + 1
	s := &segment{
		seq:     seq,
		base:    r.nextID - 1, // the pending append's id
		path:    filepath.Join(r.dir, fmt.Sprintf("%016x.seg", seq)),
		idxPath: filepath.Join(r.dir, fmt.Sprintf("%016x.idx", seq)),
		size:    size,
		alloc:   size,
		used:    segHeaderSize,
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*segment, error) {
		f.Close()
		os.Remove(s.path)
		return nil, err
	}
	s.prealloc, err = preallocate(f, size)
	if err != nil {
		return fail(fmt.Errorf("preallocate %d bytes for %s: %w", size, s.path, err))
	}
	if _, err := f.WriteAt(segHeader{Seq: seq, BaseID: s.base}.marshal(), 0); err != nil {
		return fail(err)
	}
	r.written.Add(segHeaderSize)
	if err := datasync(f); err != nil {
		return fail(err)
	}
	if err := syncDir(r.dir); err != nil {
		return fail(err)
	}
	s.f = f
	r.lastSeq = seq
	r.segs = append(r.segs, s)
	return s, nil
}

// sealLocked closes a segment for appends: it writes the segment's index
// (a cache that makes the next Open fast) and gives back the unused part of
// the preallocation. Failures here cost only speed at the next Open, so
// they are logged, not returned.
func (r *Ring) sealLocked(s *segment) {
	if s.sealed {
		return
	}
	s.sealed = true
	r.writeIndexLocked(s)
	if s.size > s.used {
		if err := s.f.Truncate(s.used); err != nil {
			r.log.Warn("ring: cannot trim sealed segment", "segment", s.path, "err", err)
			return
		}
		s.size = s.used
		s.alloc = roundUp(s.used, blockSize)
	}
}

// writeIndexLocked (re)writes s's index file in place. A torn index fails
// its checksum and is rebuilt from the data at the next Open.
func (r *Ring) writeIndexLocked(s *segment) {
	i, j := r.segEntries(s)
	b := marshalIndex(s.seq, s.used, r.entries[i:j])
	err := writeFileSync(s.idxPath, b)
	r.written.Add(uint64(len(b)))
	if err != nil {
		os.Remove(s.idxPath)
		s.idxAlloc = 0
		r.log.Warn("ring: cannot write segment index; the next start will scan the segment instead", "index", s.idxPath, "err", err)
		return
	}
	s.idxAlloc = roundUp(int64(len(b)), blockSize)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = datasync(f)
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// makeRoomLocked evicts until extra more bytes fit into the effective
// capacity (see space.go).
func (r *Ring) makeRoomLocked(extra int64) error {
	for r.usageLocked()+extra > r.effCap {
		if !r.evictAckedLocked() && !r.evictOldestLocked() {
			if r.effCap < r.opts.Capacity {
				return fmt.Errorf("ring: append to %s: the filesystem is full: %d bytes needed, the ring holds %d and the filesystem has no more room for it; free space on it (capture resumes then) or move state_dir",
					r.dir, extra, r.usageLocked())
			}
			return fmt.Errorf("%w: %s: %d bytes needed, %d of %d in use and nothing left to evict; raise ring_size",
				ErrTooLarge, r.dir, extra, r.usageLocked(), r.effCap)
		}
	}
	return nil
}

// evictAckedLocked frees acknowledged records, oldest first: a sealed
// segment holding only acknowledged records is deleted; acknowledged records
// in a segment that still holds unacknowledged ones are punched out. It
// reports whether anything was freed.
func (r *Ring) evictAckedLocked() bool {
	for _, s := range r.segs {
		if !s.sealed {
			continue
		}
		if s.unacked == 0 {
			r.dropSegmentLocked(s, dropAcked)
			return true
		}
		if s.acked > 0 && r.canPunch {
			r.punchAckedLocked(s)
			return true
		}
	}
	return false
}

// evictOldestLocked deletes the oldest sealed segment even though it holds
// unacknowledged records: the ring is full of video not yet uploaded.
func (r *Ring) evictOldestLocked() bool {
	for _, s := range r.segs {
		if s.sealed {
			r.dropSegmentLocked(s, dropLost)
			return true
		}
	}
	return false
}

// expireLocked drops sealed segments whose newest fragment is older than
// MaxAge.
func (r *Ring) expireLocked() {
	if r.opts.MaxAge <= 0 {
		return
	}
	limit := r.now().Add(-r.opts.MaxAge).UnixMilli()
	for len(r.segs) > 0 && r.segs[0].sealed && r.segs[0].newest < limit {
		r.dropSegmentLocked(r.segs[0], dropExpired)
	}
}

type dropReason int

const (
	dropAcked dropReason = iota
	dropLost
	dropExpired
)

// dropSegmentLocked deletes a segment and its records.
func (r *Ring) dropSegmentLocked(s *segment, why dropReason) {
	i, j := r.segEntries(s)
	var damaged map[ID]bool
	if s.unacked > 0 && why != dropAcked {
		// Records damaged since they were stored are damage, not lost
		// video; find them before counting.
		for k := i; k < j; k++ {
			if e := r.entries[k]; !e.acked && !r.verifyLocked(&e) {
				r.reportDamagedRecord(&e, false, errCorrupt)
				if damaged == nil {
					damaged = map[ID]bool{}
				}
				damaged[e.id] = true
			}
		}
	}
	acked, unacked := s.acked, s.unacked-len(damaged)
	if unacked > 0 {
		var first, last entry
		for k := i; k < j; k++ {
			if !r.entries[k].acked && !damaged[r.entries[k].id] {
				if first.id == 0 {
					first = r.entries[k]
				}
				last = r.entries[k]
			}
		}
		attrs := []any{"segment", s.path, "fragments", unacked,
			"first_id", first.id, "last_id", last.id, "from", first.start(), "to", last.end()}
		if why == dropExpired {
			r.st.Expired += uint64(unacked)
			r.log.Warn("ring: fragments older than max age dropped before upload", attrs...)
		} else {
			r.st.Lost += uint64(unacked)
			r.log.Error("ring: full of video not yet uploaded; DELETING the oldest unacknowledged fragments (data lost)", attrs...)
		}
	}
	r.st.EvictedAcked += uint64(acked)
	r.removeEntries(i, j)
	for k, t := range r.segs {
		if t == s {
			r.segs = append(r.segs[:k], r.segs[k+1:]...)
			break
		}
	}
	// The directory is not fsync'd: if the deletion is lost in a crash the
	// segment comes back and is evicted again; nothing is lost either way.
	for _, p := range []string{s.idxPath, s.path} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			r.log.Warn("ring: cannot delete evicted file", "file", p, "err", err)
		}
	}
	s.gone = true
	if s.refs == 0 && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// punchAckedLocked frees the acknowledged records of a sealed segment that
// also holds unacknowledged ones. The index is rewritten first, so a crash
// in between leaves records that are simply not indexed any more; a
// punched range reads as zeros, which recovery treats as a hole, not as
// damage.
func (r *Ring) punchAckedLocked(s *segment) {
	i, j := r.segEntries(s)
	var gone []entry
	for k := i; k < j; k++ {
		if r.entries[k].acked {
			gone = append(gone, r.entries[k])
		}
	}
	kept := r.entries[:i:i]
	for k := i; k < j; k++ {
		if !r.entries[k].acked {
			kept = append(kept, r.entries[k])
		}
	}
	kept = append(kept, r.entries[j:]...)
	r.entries = kept
	s.count -= len(gone)
	s.acked = 0
	r.st.EvictedAcked += uint64(len(gone))
	r.writeIndexLocked(s)
	if !s.punched {
		// Holes split the file's extents; once more than fit into the inode
		// the filesystem needs an extent block, which counts as space too.
		s.punched = true
		s.alloc += blockSize
	}
	for _, e := range gone {
		if err := punchHole(s.f, e.off, e.size()); err != nil {
			if isNotSupported(err) {
				r.canPunch = false
				r.log.Info("ring: filesystem cannot punch holes; acknowledged fragments are freed by whole segments only", "err", err)
			} else {
				r.log.Warn("ring: cannot free acknowledged record", "segment", s.path, "id", e.id, "err", err)
			}
			return
		}
		lo, hi := roundUp(e.off, blockSize), (e.off+e.size())/blockSize*blockSize
		if hi > lo {
			s.alloc -= hi - lo
		}
	}
}
