package ring

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const lockName = "lock"

// recover rebuilds the ring's state from dir. See the package documentation.
func (r *Ring) recover() error {
	ro := r.opts.ReadOnly
	if ro {
		if _, err := os.Stat(r.dir); err != nil {
			return fmt.Errorf("ring: open %s: %w", r.dir, err)
		}
	} else {
		if err := os.MkdirAll(r.dir, 0o750); err != nil {
			return fmt.Errorf("ring: create %s: %w; check state_dir and its permissions", r.dir, err)
		}
		dirF, lf, err := lockRing(r.dir)
		if err != nil {
			return err
		}
		r.dirLockF, r.lockF = dirF, lf
	}
	names, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("ring: open %s: %w", r.dir, err)
	}
	var seqs []uint64
	for _, de := range names {
		name := de.Name()
		if base, ok := strings.CutSuffix(name, ".seg"); ok && len(base) == 16 {
			if seq, err := strconv.ParseUint(base, 16, 64); err == nil && seq > 0 {
				seqs = append(seqs, seq)
			}
		}
		if name == ackTmpName && !ro {
			os.Remove(filepath.Join(r.dir, name))
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })

	var all []entry
	maxBase := ID(0)
	for i, seq := range seqs {
		r.lastSeq = seq
		s, es, err := r.loadSegment(seq, i == len(seqs)-1)
		if err != nil {
			return err
		}
		if s == nil {
			continue
		}
		r.segs = append(r.segs, s)
		all = append(all, es...)
		maxBase = max(maxBase, s.base)
	}

	// Records are ordered by id and, because segments fill one after the
	// other, by segment too. Anything breaking that order is damage that
	// happened to pass the checksums; keep the first copy.
	sort.SliceStable(all, func(i, j int) bool { return all[i].id < all[j].id })
	kept := all[:0]
	for _, e := range all {
		if n := len(kept); n > 0 && (e.id == kept[n-1].id || e.seg.seq < kept[n-1].seg.seq) {
			r.st.CorruptSkipped++
			r.log.Error("ring: dropping a record out of order", "id", e.id, "segment", e.seg.path, "offset", e.off)
			continue
		}
		kept = append(kept, e)
	}
	all = kept

	ident := readIdentity(r.dir)
	if ident == 0 {
		ident = newIdentity()
	}
	acks, ast, created, err := openAckLog(r.dir, r.ackLogSize, ro, ident)
	if err != nil {
		return fmt.Errorf("ring: open ack log in %s: %w", r.dir, err)
	}
	r.acks = acks
	if acks != nil {
		r.ackAlloc.Store(acks.alloc)
	}
	if ast, err = r.checkIdentity(ident, acks, ast, created, all); err != nil {
		return err
	}
	if ast.damaged > 0 {
		r.log.Warn("ring: damaged acknowledgement entries ignored; those fragments may be uploaded again", "entries", ast.damaged)
	}
	ast.apply(all)
	for i := range all {
		e := &all[i]
		e.seg.count++
		if e.acked {
			e.seg.acked++
		} else {
			e.seg.unacked++
		}
		e.seg.newest = max(e.seg.newest, e.end().UnixMilli())
	}
	r.entries = all
	r.nextID = max(r.nextID, maxBase, ast.end())
	if n := len(all); n > 0 {
		r.nextID = max(r.nextID, all[n-1].id+1)
	}
	if ro {
		return nil
	}
	if acks.pos > acks.slots/2 {
		r.ackMu.Lock()
		err := r.checkpointAcks(0)
		r.ackMu.Unlock()
		if err != nil {
			return fmt.Errorf("ring: compact ack log in %s: %w; %s", r.dir, err, fixFor(err, r.dir))
		}
	}
	// A smaller ring_size than last time takes effect now.
	r.mu.Lock()
	r.refreshCapLocked()
	err = r.makeRoomLocked(0)
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("ring: over capacity after recovery", "err", err)
	}
	return nil
}

// loadSegment opens one segment and returns its records. The last segment
// is the active one: it is walked and its tail verified; earlier ones use
// their index when it is consistent. A nil segment means there was nothing
// to keep.
func (r *Ring) loadSegment(seq uint64, last bool) (*segment, []entry, error) {
	ro := r.opts.ReadOnly
	s := &segment{
		seq:     seq,
		path:    filepath.Join(r.dir, fmt.Sprintf("%016x.seg", seq)),
		idxPath: filepath.Join(r.dir, fmt.Sprintf("%016x.idx", seq)),
	}
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(s.path, flag, 0)
	if err != nil {
		if os.IsNotExist(err) { // evicted by a writer while we list (read-only)
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("ring: open %s: %w; check the permissions of %s", s.path, err, r.dir)
	}
	s.f = f
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("ring: stat %s: %w", s.path, err)
	}
	s.size = fi.Size()
	hb := make([]byte, segHeaderSize)
	var sh segHeader
	_, rerr := f.ReadAt(hb, 0)
	goodHeader := rerr == nil && sh.unmarshal(hb) && sh.Seq == seq
	if goodHeader {
		s.base = sh.BaseID
	}

	var es []entry
	// A sealed segment's index covers it whole. The active segment's index,
	// written at the last Close, covers a prefix: records appended after
	// it (before a crash) are found by walking on from its end.
	indexed := false
	if b, err := os.ReadFile(s.idxPath); err == nil {
		if length, ies, ok := unmarshalIndex(b, seq, s.size); ok {
			es, s.used, indexed = ies, length, true
			s.idxAlloc = roundUp(int64(len(b)), blockSize)
		} else {
			r.log.Info("ring: segment index inconsistent with its data; rebuilding it", "index", s.idxPath)
		}
	}
	if !indexed || last {
		from, lastID := int64(segHeaderSize), ID(0)
		if n := len(es); n > 0 {
			from, lastID = s.used, es[n-1].id
		}
		more, end, torn := r.walk(s, from, lastID, last)
		es, s.used = append(es, more...), end
		if !last && end < s.size {
			// A sealed segment ends with its last record: anything after
			// it is a record cut short (a truncated file) or damage.
			if zero, _ := zeroRange(s, end, s.size); !zero {
				after, lastEnd := lastID, time.Time{}
				if n := len(es); n > 0 {
					after, lastEnd = es[n-1].id, es[n-1].end()
				}
				r.reportDamagedRegion(s, end, s.size, after, lastEnd, time.Time{})
			}
		}
		if torn != nil && !ro {
			// Zero the torn record so that no later scan can mistake its
			// remains for data.
			n := min(torn.size(), s.size-torn.off)
			if _, err := f.WriteAt(make([]byte, n), torn.off); err == nil {
				r.written.Add(uint64(n))
				datasync(f)
			}
		}
	}
	if !goodHeader && len(es) == 0 {
		// Creation was interrupted before the header was written, or the
		// file holds nothing recognisable: there is nothing to keep.
		f.Close()
		if !ro {
			os.Remove(s.path)
			os.Remove(s.idxPath)
			r.log.Info("ring: removed a segment without data", "segment", s.path)
		}
		return nil, nil, nil
	}
	if !goodHeader {
		r.log.Warn("ring: segment header damaged; its records were recovered", "segment", s.path, "records", len(es))
	}
	for i := range es {
		es[i].seg = s
	}
	s.sealed = !last
	switch {
	case ro, last:
		// The active segment's index is rewritten at Close and at sealing.
		s.idxAlloc = 0
	case !indexed:
		b := marshalIndex(s.seq, s.used, es)
		if err := writeFileSync(s.idxPath, b); err == nil {
			r.written.Add(uint64(len(b)))
			s.idxAlloc = roundUp(int64(len(b)), blockSize)
		} else {
			os.Remove(s.idxPath)
		}
		fallthrough
	default:
		if s.size > s.used && f.Truncate(s.used) == nil {
			s.size = s.used
		}
	}
	if fi, err := f.Stat(); err == nil {
		s.alloc = allocated(fi)
	}
	if last {
		s.alloc = max(s.alloc, roundUp(s.size, blockSize))
		s.prealloc = true // writes stay below the current size
	}
	return s, es, nil
}

// walk rebuilds a segment's records from their headers, starting at off
// after the record with id last (0: the start of the segment). A damaged header
// in the middle is skipped by scanning for the next valid one; a region
// that reads as zeros is a punched hole (acknowledged records freed in
// place), not damage. The last record's payload is checked
// too, because a crash can only tear the record written last; a torn one is
// left out and returned.
//
// active says whether s is the active segment: only there can a crash tear
// the last record; in a sealed one a bad last record is damage.
func (r *Ring) walk(s *segment, off int64, last ID, active bool) (es []entry, end int64, torn *entry) {
	hb := make([]byte, recHeaderSize)
	var lastEnd time.Time
	for off+recHeaderSize <= s.size {
		var h recHeader
		if _, err := s.f.ReadAt(hb, off); err == nil && h.parse(hb) && plausible(&h, s, off, last) {
			e := entry{id: h.ID, seg: s, off: off, plen: h.Len, pcrc: h.CRC, tc: h.Timecode, dur: h.Duration}
			es = append(es, e)
			last, lastEnd = h.ID, e.end()
			off += recHeaderSize + int64(h.Len)
			continue
		}
		next := resync(s, off+1, last)
		if next < 0 {
			break
		}
		if zero, readable := zeroRange(s, off, next); !zero {
			var nh recHeader
			s.f.ReadAt(hb, next)
			nh.parse(hb)
			r.reportDamagedRegion(s, off, next, last, lastEnd, time.UnixMilli(nh.Timecode))
			if readable {
				r.clearRange(s, off, next-off)
			}
		}
		off = next
	}
	end = off
	if len(es) > 0 {
		e := es[len(es)-1]
		buf := make([]byte, e.plen)
		if _, err := s.f.ReadAt(buf, e.off+recHeaderSize); err != nil || crc(buf) != e.pcrc {
			es = es[:len(es)-1]
			end = e.off
			torn = &e
			if !active {
				r.reportDamagedRecord(&e, false, fmt.Errorf("%w: payload checksum mismatch", errCorrupt))
			} else if r.opts.ReadOnly {
				// Most likely the record a running writer is appending.
				r.log.Debug("ring: last record incomplete; left out", "segment", s.path, "id", e.id)
			} else {
				r.st.TornTails++
				r.log.Warn("ring: cut a record torn by a crash; it had not been stored", "segment", s.path, "id", e.id, "offset", e.off)
			}
		}
	}
	return es, end, torn
}

// plausible reports whether a header with a valid checksum belongs at off.
func plausible(h *recHeader, s *segment, off int64, last ID) bool {
	return h.Seq == s.seq && h.ID > last && h.Len <= maxPayload && off+recHeaderSize+int64(h.Len) <= s.size
}

// resyncChunk is how much resync reads at a time.
const resyncChunk = 1 << 20

// resync returns the offset of the first plausible record header at or
// after from, or -1. Holes are skipped without reading them.
func resync(s *segment, from int64, last ID) int64 {
	buf := make([]byte, resyncChunk+recHeaderSize)
	magic := []byte(recMagic)
	for pos := from; pos+recHeaderSize <= s.size; pos += resyncChunk {
		d := nextData(s.f, pos)
		if d < 0 {
			return -1
		}
		pos = max(pos, d)
		n, _ := s.f.ReadAt(buf[:min(int64(len(buf)), s.size-pos)], pos)
		b := buf[:n]
		for i := 0; i+recHeaderSize <= len(b); {
			k := bytes.Index(b[i:], magic)
			if k < 0 {
				break
			}
			p := i + k
			var h recHeader
			if p+recHeaderSize <= len(b) && h.parse(b[p:]) && plausible(&h, s, pos+int64(p), last) {
				return pos + int64(p)
			}
			i = p + 1
		}
	}
	return -1
}

// zeroRange reports whether [from, to) of s reads as zeros, and whether
// all of it could be read.
func zeroRange(s *segment, from, to int64) (zero, readable bool) {
	buf := make([]byte, min(to-from, resyncChunk))
	zero = true
	for pos := from; pos < to; {
		n := min(int64(len(buf)), to-pos)
		if _, err := s.f.ReadAt(buf[:n], pos); err != nil {
			return false, false
		}
		zero = zero && isZero(buf[:n])
		pos += n
	}
	return zero, true
}
