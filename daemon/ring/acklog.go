package ring

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"unsafe"

	"github.com/kvscamd/kvscamd/internal/atomicfile"
)

const (
	ackLogName = "acks.log"
	ackTmpName = "acks.log.tmp"
)

// ackLog is the durable record of acknowledgements: fixed-size checksummed
// slots written in place into a preallocated, zero-filled file, so that an
// ack costs one small write and one fdatasync and never changes the file's
// size. Guarded by Ring.ackMu.
//
// The slot is written as its whole 4 KiB block with O_DIRECT where the
// filesystem allows it: through the page cache, a tiny write dirties a
// whole folio, which recent kernels make up to 64 KiB large, and the disk
// would see that much per acknowledgement.
type ackLog struct {
	dir    string
	f      *os.File
	direct *os.File // O_DIRECT handle on the same file, or nil
	blk    []byte   // block-aligned copy of the block holding slot pos
	blkOff int64    // file offset of blk; -1 when blk is not loaded
	pos    int64    // next free slot
	slots  int64
	alloc  int64
	size   int64 // smallest file replace writes (Options.AckLogSize)
	ident  ID    // ring identity written first into every new log; 0: none
}

// alignedBlock returns a blockSize buffer aligned to blockSize, as O_DIRECT
// requires.
func alignedBlock() []byte {
	b := make([]byte, 2*blockSize)
	shift := (blockSize - int(uintptr(unsafe.Pointer(&b[0]))%blockSize)) % blockSize
	return b[shift : shift+blockSize : shift+blockSize]
}

// setFile installs f as the log's file and opens the direct handle.
func (l *ackLog) setFile(f *os.File) {
	if l.direct != nil {
		l.direct.Close()
	}
	l.f, l.direct, l.blkOff = f, openDirect(f.Name()), -1
	if l.blk == nil {
		l.blk = alignedBlock()
	}
}

// ackState is what an ack log says: ids below watermark are acknowledged,
// and so is every id inside one of the ranges.
type ackState struct {
	watermark ID
	ranges    []idRange
	damaged   int // slots that failed their checksum
	ident     ID  // the ring identity the log names; 0 when it names none
}

type idRange struct{ from, to ID } // [from, to)

func (a *ackState) add(s ackSlot) {
	switch s.Kind {
	case 'W':
		a.watermark = max(a.watermark, s.ID)
	case 'I':
		if a.ident == 0 {
			a.ident = s.ID
		}
	case 'A':
		if s.Count > 0 && s.ID+ID(s.Count) > s.ID {
			a.ranges = append(a.ranges, idRange{s.ID, s.ID + ID(s.Count)})
		}
	}
}

// end returns one past the highest id the state mentions.
func (a *ackState) end() ID {
	e := a.watermark
	for _, rg := range a.ranges {
		e = max(e, rg.to)
	}
	return e
}

// apply marks the entries (sorted by id) the state acknowledges.
func (a *ackState) apply(es []entry) {
	sort.Slice(a.ranges, func(i, j int) bool { return a.ranges[i].from < a.ranges[j].from })
	k := 0
	for i := range es {
		id := es[i].id
		if id < a.watermark {
			es[i].acked = true
			continue
		}
		for k < len(a.ranges) && a.ranges[k].to <= id {
			k++
		}
		// Ranges may overlap; look ahead over those starting at or before id.
		for m := k; m < len(a.ranges) && a.ranges[m].from <= id; m++ {
			if id < a.ranges[m].to {
				es[i].acked = true
				break
			}
		}
	}
}

// openAckLog reads dir's ack log, creating it when create is set and it is
// missing. readOnly opens without writing anything. size is the smallest
// log a checkpoint writes.
// ident is the ring identity a new log starts with. created reports that
// there was no log.
func openAckLog(dir string, size int64, readOnly bool, ident ID) (l *ackLog, st ackState, created bool, err error) {
	path := filepath.Join(dir, ackLogName)
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if os.IsNotExist(err) {
		if readOnly {
			return nil, st, true, nil
		}
		l := &ackLog{dir: dir, size: size, ident: ident}
		if err := l.replace(nil); err != nil {
			return nil, st, true, err
		}
		st.ident = ident
		return l, st, true, nil
	}
	if err != nil {
		return nil, st, false, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, st, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, st, false, err
	}
	l = &ackLog{dir: dir, size: size, slots: int64(len(b)) / ackSlotSize, alloc: allocated(fi)}
	l.setFile(f)
	for i := int64(0); i < l.slots; i++ {
		slot := b[i*ackSlotSize : (i+1)*ackSlotSize]
		if isZero(slot) {
			continue
		}
		l.pos = i + 1
		var s ackSlot
		if !s.parse(slot) {
			st.damaged++
			continue
		}
		st.add(s)
	}
	l.ident = st.ident
	return l, st, false, nil
}

// append writes one slot durably. It returns errAckLogFull when the log has
// no free slot; the caller then checkpoints.
func (l *ackLog) append(s ackSlot) (int, error) {
	if l.pos >= l.slots {
		return 0, errAckLogFull
	}
	off := l.pos * ackSlotSize
	boff := off / blockSize * blockSize
	if l.blkOff != boff {
		if _, err := l.f.ReadAt(l.blk, boff); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		l.blkOff = boff
	}
	s.put(l.blk[off-boff:])
	n := ackSlotSize
	var err error
	if l.direct != nil && boff+blockSize <= l.slots*ackSlotSize {
		_, err = l.direct.WriteAt(l.blk, boff)
		n = blockSize
	} else {
		_, err = l.f.WriteAt(l.blk[off-boff:off-boff+ackSlotSize], off)
	}
	if err != nil {
		l.blkOff = -1
		return 0, err
	}
	l.pos++
	return n, datasync(l.f)
}

var errAckLogFull = errors.New("ack log full")

// replace atomically swaps the log for a fresh one holding slots. A crash
// at any point leaves either the old or the new log; the temporary file
// has a fixed name, which Open removes.
func (l *ackLog) replace(slots []ackSlot) error {
	if l.ident != 0 {
		slots = append([]ackSlot{{Kind: 'I', ID: l.ident}}, slots...)
	}
	size := max(l.size, roundUp(int64(len(slots)+1)*ackSlotSize*2, blockSize))
	b := make([]byte, size)
	for i, s := range slots {
		s.put(b[int64(i)*ackSlotSize:])
	}
	path := filepath.Join(l.dir, ackLogName)
	if err := atomicfile.WriteFile(path, b, 0o640, atomicfile.Temp(ackTmpName)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if l.f != nil {
		l.f.Close()
	}
	l.setFile(f)
	l.pos, l.slots, l.alloc = int64(len(slots)), size/ackSlotSize, size
	return nil
}

func (l *ackLog) close() error {
	if l.direct != nil {
		l.direct.Close()
		l.direct = nil
	}
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// checkpointSlots describes the acknowledgement state of entries compactly:
// a watermark at the first unacknowledged id (or next when there is none)
// and one range per run of acknowledged ids above it.
func checkpointSlots(es []entry, next ID) []ackSlot {
	first := -1
	for i := range es {
		if !es[i].acked {
			first = i
			break
		}
	}
	if first < 0 {
		return []ackSlot{{Kind: 'W', ID: next}}
	}
	slots := []ackSlot{{Kind: 'W', ID: es[first].id}}
	for i := first; i < len(es); i++ {
		if !es[i].acked {
			continue
		}
		// Ids of a run need not be consecutive (failed appends leave gaps),
		// so a range covers from the run's first id to its last.
		j := i
		for j+1 < len(es) && es[j+1].acked {
			j++
		}
		slots = append(slots, ackSlot{Kind: 'A', ID: es[i].id, Count: uint32(es[j].id - es[i].id + 1)})
		i = j
	}
	return slots
}

// Ack marks a fragment as done: uploaded and persisted, or given up for
// good. It is idempotent, may come in any order, and returns after the
// acknowledgement is on disk. Acking an unknown or evicted id does nothing.
func (r *Ring) Ack(id ID) error {
	if r.opts.ReadOnly {
		return ErrReadOnly
	}
	r.ackMu.Lock()
	defer r.ackMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	i := r.find(id)
	if i < 0 || r.entries[i].acked {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	n, err := r.acks.append(ackSlot{Kind: 'A', ID: id, Count: 1})
	if errors.Is(err, errAckLogFull) {
		err = r.checkpointAcks(id)
	}
	r.written.Add(uint64(n))
	if err != nil {
		return fmt.Errorf("ring: ack %d in %s: %w; %s", id, r.dir, err, fixFor(err, r.dir))
	}
	r.mu.Lock()
	r.markAckedLocked(id)
	r.mu.Unlock()
	return nil
}

func (r *Ring) markAckedLocked(id ID) {
	if i := r.find(id); i >= 0 && !r.entries[i].acked {
		e := &r.entries[i]
		e.acked = true
		e.seg.unacked--
		e.seg.acked++
	}
}

// checkpointAcks replaces the full ack log by a compact one that includes
// the pending acknowledgement of id. Caller holds ackMu.
func (r *Ring) checkpointAcks(pending ID) error {
	r.mu.Lock()
	es := make([]entry, len(r.entries))
	copy(es, r.entries)
	next := r.nextID
	r.mu.Unlock()
	if i := sort.Search(len(es), func(k int) bool { return es[k].id >= pending }); i < len(es) && es[i].id == pending {
		es[i].acked = true
	}
	slots := checkpointSlots(es, next)
	if err := r.acks.replace(slots); err != nil {
		return err
	}
	r.written.Add(uint64(r.acks.slots * ackSlotSize))
	r.ackAlloc.Store(r.acks.alloc)
	return nil
}
