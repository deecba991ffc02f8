package ring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// ID identifies a record. Append assigns ids in strictly increasing order;
// an id is never reused, also not after a restart, so id order is append
// order (and fragment timecode order).
type ID uint64

// Options configure a ring.
type Options struct {
	// Capacity is the most bytes the ring's files occupy on disk (config
	// ring_size). At least MinCapacity.
	Capacity int64
	// MaxAge drops sealed segments whose newest fragment ended longer ago
	// than this; 0 keeps fragments until space is needed.
	MaxAge time.Duration
	// Logger receives recovery, eviction and corruption reports; nil means
	// slog.Default().
	Logger *slog.Logger

	// SegmentSize overrides the segment size (0 = Capacity/16 within
	// [MinSegmentSize, MaxSegmentSize]). Tests use it to get many segments.
	SegmentSize int64
	// ReadOnly opens the ring for reading only, without taking the lock or
	// repairing anything, so that `kvscamd export` can read a ring the
	// daemon is writing.
	ReadOnly bool
	// Now returns the current time for MaxAge; nil means time.Now.
	Now func() time.Time
	// AckLogSize is the preallocated size of acks.log, rounded up to
	// whole 4 KiB blocks; 0 means DefaultAckLogSize. The same amount is
	// kept free for the checkpoint that replaces a full log, so a smaller
	// log leaves more room for video but checkpoints more often.
	AckLogSize int64
}

// Limits.
const (
	// MinCapacity is the smallest ring: a few segments plus metadata.
	MinCapacity = 1 << 20
	// MinSegmentSize and MaxSegmentSize bound the automatic segment size.
	// Large segments mean few files and few metadata updates; 64 MiB keeps
	// the walk of the active segment at Open short and the granularity of
	// whole-segment eviction below 1/16 of the ring.
	MinSegmentSize = 64 << 10
	MaxSegmentSize = 64 << 20
	// segmentsPerRing is the target number of segments in a full ring.
	segmentsPerRing = 16
)

// DefaultAckLogSize is the size of acks.log when Options.AckLogSize is 0:
// 2048 acknowledgements between checkpoints, an hour of 2 s fragments.
const DefaultAckLogSize = 64 << 10

// Errors.
var (
	// ErrClosed is returned by every call on a closed ring.
	ErrClosed = errors.New("ring: closed")
	// ErrReadOnly is returned by Append and Ack on a ring opened ReadOnly.
	ErrReadOnly = errors.New("ring: opened read-only")
	// ErrTooLarge is returned by Append for a fragment that cannot fit into
	// the ring even when it is empty.
	ErrTooLarge = errors.New("ring: fragment does not fit into the ring")

	errLocked  = errors.New("locked by another process")
	errCorrupt = errors.New("corrupt record")
	errHole    = errors.New("record reads as zeros")
)

// Stats is a snapshot of a ring's state and counters. Counters start at
// zero when the ring is opened.
type Stats struct {
	Dir       string
	Capacity  int64 // configured maximum bytes on disk
	BytesUsed int64 // bytes the ring's files occupy (as accounted, 4 KiB blocks)
	// EffectiveCapacity is what the ring can hold on its filesystem: the
	// configured Capacity, or less when the filesystem is smaller (see
	// SpaceOf). Measured at Open and at every new segment.
	EffectiveCapacity int64

	Fragments     int       // records stored
	Unacked       int       // records stored and not acknowledged
	OldestUnacked time.Time // start of the oldest unacknowledged fragment; zero if none
	Oldest        time.Time // start of the oldest stored fragment; zero if empty
	Newest        time.Time // end of the newest stored fragment; zero if empty
	NextID        ID

	EvictedAcked   uint64 // acknowledged fragments evicted for space
	Lost           uint64 // unacknowledged fragments evicted for space: data loss
	Expired        uint64 // unacknowledged fragments dropped by MaxAge
	CorruptSkipped uint64 // damaged records skipped (at Open or when read)
	TornTails      uint64 // records cut at Open because a crash tore them
	AppendErrors   uint64 // failed appends
	// AckLogReset is AckLogMissing or AckLogReplaced when Open found the
	// ack log deleted or not this ring's: every stored fragment will be
	// uploaded again. Empty normally.
	AckLogReset string

	BytesAppended uint64 // fragment encodings appended
	BytesWritten  uint64 // every byte written: records, headers, indexes, acks
}

// entry is the in-memory index of one stored record.
type entry struct {
	id    ID
	seg   *segment
	off   int64 // of the record header in the segment file
	plen  uint32
	pcrc  uint32
	tc    int64 // epoch ms
	dur   time.Duration
	acked bool
}

func (e *entry) size() int64      { return recHeaderSize + int64(e.plen) }
func (e *entry) start() time.Time { return time.UnixMilli(e.tc) }
func (e *entry) end() time.Time   { return e.start().Add(e.dur) }

// segment is one segment file. All fields are guarded by Ring.mu, except
// that the writer reads used/size of the active segment without it (only
// the writer changes them).
type segment struct {
	seq      uint64
	base     ID
	path     string
	idxPath  string
	f        *os.File
	size     int64 // file length; writes stay below it
	used     int64 // end of the last record
	alloc    int64 // accounted bytes of the segment file
	idxAlloc int64 // accounted bytes of its index file (sealed segments)
	prealloc bool  // size is reserved on disk
	sealed   bool
	punched  bool // holes were punched into it since Open
	count    int  // records in the index
	unacked  int
	acked    int   // acknowledged records still stored
	newest   int64 // latest fragment end in epoch ms
	refs     int   // readers inside the file
	gone     bool  // evicted or ring closed: close f when refs reaches 0
}

// Ring is one stream's ring buffer. See the package documentation.
type Ring struct {
	dir     string
	opts    Options
	log     *slog.Logger
	segSize int64
	// ackLogSize is Options.AckLogSize with its default, in whole blocks.
	ackLogSize int64
	now        func() time.Time
	lockF      *os.File // the lock file, locked
	dirLockF   *os.File // the ring directory, locked (see lockRing)

	wmu  sync.Mutex // one Append at a time; also held by Close
	wbuf []byte     // record header and fragment prefix, reused by Append

	bufs  readBufs // record buffers lent to readers (Next, Range)
	heads readBufs // head buffers lent to streaming readers (NextStream)
	vbuf  []byte   // verifyLocked's scratch, under mu

	ackMu sync.Mutex // serialises ack log writes and checkpoints
	acks  *ackLog

	mu       sync.Mutex
	segs     []*segment // by seq; the last one is active unless sealed
	entries  []entry    // by id
	nextID   ID
	lastSeq  uint64
	notify   chan struct{} // closed and replaced on every append
	closed   bool
	canPunch bool
	st       Stats // counters only
	// effCap is the effective capacity (space.go): at most
	// Options.Capacity, less when the filesystem cannot hold that much.
	effCap    int64
	warnedCap bool

	written  atomic.Uint64
	ackAlloc atomic.Int64 // accounted bytes of acks.log (changed under ackMu)
}

func (o *Options) ackLogSize() int64 {
	if o.AckLogSize > 0 {
		return roundUp(o.AckLogSize, blockSize)
	}
	return DefaultAckLogSize
}

func (o *Options) segmentSize() int64 {
	if o.SegmentSize > 0 {
		return roundUp(o.SegmentSize, blockSize)
	}
	s := o.Capacity / segmentsPerRing / blockSize * blockSize
	return min(max(s, MinSegmentSize), MaxSegmentSize)
}

// Open opens or creates the ring in dir, recovering from whatever a crash
// left there. See the package documentation for what recovery does.
func Open(dir string, opts Options) (*Ring, error) {
	if opts.Capacity < MinCapacity {
		return nil, fmt.Errorf("ring: open %s: capacity %d bytes is below the minimum of %d; raise ring_size", dir, opts.Capacity, MinCapacity)
	}
	if opts.SegmentSize < 0 || opts.SegmentSize > opts.Capacity/4 {
		return nil, fmt.Errorf("ring: open %s: segment size %d must be at most a quarter of the capacity %d", dir, opts.SegmentSize, opts.Capacity)
	}
	if opts.MaxAge < 0 {
		return nil, fmt.Errorf("ring: open %s: negative max age %v", dir, opts.MaxAge)
	}
	if opts.AckLogSize < 0 {
		return nil, fmt.Errorf("ring: open %s: negative ack log size %d", dir, opts.AckLogSize)
	}
	r := &Ring{
		dir:        dir,
		opts:       opts,
		log:        opts.Logger,
		segSize:    opts.segmentSize(),
		ackLogSize: opts.ackLogSize(),
		now:        opts.Now,
		nextID:     1,
		notify:     make(chan struct{}),
		canPunch:   true,
		effCap:     opts.Capacity,
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	// The caller's logger already names the stream. What recovery reports
	// also names the directory, since that is what an operator inspects
	// when Open finds damage; later records name the files they concern.
	log := r.log
	r.log = log.With("dir", dir)
	if r.now == nil {
		r.now = time.Now
	}
	r.st.Dir, r.st.Capacity = dir, opts.Capacity
	err := r.recover()
	r.log = log
	if err != nil {
		r.closeFiles()
		return nil, err
	}
	return r, nil
}

// Close releases the ring's files and wakes blocked readers with ErrClosed.
// Stored fragments stay on disk; the active segment keeps its preallocated
// room for the next Open.
func (r *Ring) Close() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.ackMu.Lock()
	defer r.ackMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.notify)
	if act := r.activeLocked(); act != nil {
		// Lets the next Open skip walking the active segment; after a
		// crash it walks only what was appended since.
		r.writeIndexLocked(act)
	}
	r.mu.Unlock()
	return r.closeFiles()
}

// closeFiles closes every file not in use by a reader; readers close theirs
// on release.
func (r *Ring) closeFiles() error {
	var errs []error
	r.mu.Lock()
	for _, s := range r.segs {
		s.gone = true
		if s.refs == 0 && s.f != nil {
			errs = append(errs, s.f.Close())
			s.f = nil
		}
	}
	r.mu.Unlock()
	if r.acks != nil {
		errs = append(errs, r.acks.close())
	}
	if r.lockF != nil {
		errs = append(errs, r.lockF.Close())
	}
	if r.dirLockF != nil {
		errs = append(errs, r.dirLockF.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ring: close %s: %w", r.dir, err)
	}
	return nil
}

// NextID returns the id the next Append will get.
func (r *Ring) NextID() ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nextID
}

// FirstUnacked returns the lowest stored id that is not acknowledged;
// ok=false when there is none (then new data appears at NextID).
func (r *Ring) FirstUnacked() (ID, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := r.firstUnackedLocked(); i >= 0 {
		return r.entries[i].id, true
	}
	return 0, false
}

func (r *Ring) firstUnackedLocked() int {
	for i := range r.entries {
		if !r.entries[i].acked {
			return i
		}
	}
	return -1
}

// Acked reports whether id is stored and acknowledged. An id that is not
// stored (evicted, never appended, damaged) reports false.
func (r *Ring) Acked(id ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.find(id)
	return i >= 0 && r.entries[i].acked
}

// Stats returns a snapshot of the ring's state and counters.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st
	s.BytesUsed = r.usageLocked()
	s.EffectiveCapacity = r.effCap
	s.Fragments = len(r.entries)
	s.NextID = r.nextID
	for i := range r.entries {
		if !r.entries[i].acked {
			if s.Unacked == 0 {
				s.OldestUnacked = r.entries[i].start()
			}
			s.Unacked++
		}
	}
	if n := len(r.entries); n > 0 {
		s.Oldest = r.entries[0].start()
		s.Newest = r.entries[n-1].end()
	}
	s.BytesWritten = r.written.Load()
	return s
}

// search returns the index of the first entry with id >= id.
func (r *Ring) search(id ID) int {
	return sort.Search(len(r.entries), func(i int) bool { return r.entries[i].id >= id })
}

// find returns the index of the entry with exactly this id, or -1.
func (r *Ring) find(id ID) int {
	if i := r.search(id); i < len(r.entries) && r.entries[i].id == id {
		return i
	}
	return -1
}

// Next returns the first stored fragment with id >= from, waiting for one
// to be appended if there is none yet. It returns ctx.Err() when ctx ends
// and ErrClosed when the ring is closed. Damaged records are skipped (and
// counted); evicted ids are skipped. The fragment's bytes are a fresh read
// owned by the caller.
func (r *Ring) Next(ctx context.Context, from ID) (ID, fragmenter.Fragment, error) {
	id, f, _, err := r.next(ctx, from, false)
	return id, f, err
}

// next is Next, or NextStream when stream is set.
func (r *Ring) next(ctx context.Context, from ID, stream bool) (ID, fragmenter.Fragment, *Body, error) {
	for {
		if err := ctx.Err(); err != nil {
			return 0, fragmenter.Fragment{}, nil, err
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return 0, fragmenter.Fragment{}, nil, ErrClosed
		}
		if i := r.search(from); i < len(r.entries) {
			e := r.entries[i]
			e.seg.refs++
			r.mu.Unlock()
			var f fragmenter.Fragment
			var body *Body
			var err error
			if stream {
				f, body, err = r.readHead(&e)
			} else {
				f, err = r.read(&e)
			}
			r.release(e.seg)
			if err == nil {
				return e.id, f, body, nil
			}
			r.dropBad(&e, err)
			from = e.id + 1
			continue
		}
		wake := r.notify
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, fragmenter.Fragment{}, nil, ctx.Err()
		case <-wake:
		}
	}
}

// Range calls fn for every stored fragment, acknowledged or not, whose span
// overlaps [from, to), in id order; a zero time leaves that side open. A
// fragment without duration overlaps when its start lies in the interval.
// Fragments evicted while Range runs are skipped; an error from fn stops
// Range and is returned.
func (r *Ring) Range(from, to time.Time, fn func(ID, fragmenter.Fragment) error) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	var sel []entry
	for _, e := range r.entries {
		if overlaps(e.start(), e.end(), from, to) {
			sel = append(sel, e)
		}
	}
	r.mu.Unlock()
	for i := range sel {
		e := &sel[i]
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return ErrClosed
		}
		if e.seg.gone || r.find(e.id) < 0 {
			r.mu.Unlock()
			continue
		}
		e.seg.refs++
		r.mu.Unlock()
		f, err := r.read(e)
		r.release(e.seg)
		if err != nil {
			r.dropBad(e, err)
			continue
		}
		if err := fn(e.id, f); err != nil {
			return err
		}
	}
	return nil
}

func overlaps(start, end, from, to time.Time) bool {
	if !to.IsZero() && !start.Before(to) {
		return false
	}
	if from.IsZero() {
		return true
	}
	return end.After(from) || !start.Before(from)
}

// release drops a reader's hold on s, closing the file if s was evicted.
func (r *Ring) release(s *segment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.refs--
	if s.refs == 0 && s.gone && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// read reads and verifies one record. The caller holds a reference on e.seg.
func (r *Ring) read(e *entry) (fragmenter.Fragment, error) {
	var f fragmenter.Fragment
	buf := r.bufs.get(int(e.size()))
	if _, err := e.seg.f.ReadAt(buf, e.off); err != nil {
		return f, fmt.Errorf("read %s at %d: %w", e.seg.path, e.off, err)
	}
	if err := e.checkHeader(buf[:recHeaderSize]); err != nil {
		return f, err
	}
	if crc(buf[recHeaderSize:]) != e.pcrc {
		return f, fmt.Errorf("%w: payload checksum mismatch", errCorrupt)
	}
	if err := f.UnmarshalBinary(buf[recHeaderSize:]); err != nil {
		return f, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return f, nil
}

// checkHeader checks the record header b read at e: a hole, or a header
// that does not match the index, is damage.
func (e *entry) checkHeader(b []byte) error {
	var h recHeader
	switch {
	case isZero(b[:recHeaderSize]):
		return errHole
	case !h.parse(b):
		return fmt.Errorf("%w: bad header", errCorrupt)
	case h.ID != e.id || h.Seq != e.seg.seq || h.Len != e.plen || h.CRC != e.pcrc:
		return fmt.Errorf("%w: header (id %d seq %d len %d) does not match the index", errCorrupt, h.ID, h.Seq, h.Len)
	}
	return nil
}

// Recycle hands back a fragment returned by Next or Range once the caller
// no longer reads its Header or Cluster, so that the next read reuses its
// memory instead of allocating a record-sized buffer. A fragment that is
// never recycled is simply left to the garbage collector.
func (r *Ring) Recycle(f fragmenter.Fragment) { r.bufs.put(f.Cluster) }

// dropBad handles a record that could not be read: if it is still in the
// index it is damaged, so it is removed, counted and logged; if eviction
// removed it meanwhile, the failed read was a race and nothing happened.
func (r *Ring) dropBad(e *entry, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.find(e.id)
	if i < 0 || r.entries[i].seg != e.seg || r.entries[i].off != e.off {
		return
	}
	acked := r.entries[i].acked
	r.removeEntries(i, i+1)
	if errors.Is(err, errHole) {
		// What eviction leaves behind (a punched hole): in a read-only
		// view, the writer freed it after this view was opened.
		r.log.Debug("ring: record freed meanwhile; skipped", "id", e.id, "segment", e.seg.path)
		return
	}
	if !errors.Is(err, errCorrupt) {
		// The device failed the read: not cleared, see damage.go.
		r.st.CorruptSkipped++
		r.log.Error("ring: cannot read a stored record; skipping it", "id", e.id, "segment", e.seg.path,
			"offset", e.off, "time", e.start(), "err", err, "fix", fixFor(err, r.dir))
		return
	}
	r.reportDamagedRecord(e, acked, err)
	if !r.opts.ReadOnly && !e.seg.gone {
		r.clearRange(e.seg, e.off, e.size())
		if e.seg.sealed {
			r.writeIndexLocked(e.seg)
		}
	}
}

// removeEntries removes entries [i, j) and updates their segments' counts.
func (r *Ring) removeEntries(i, j int) {
	for k := i; k < j; k++ {
		e := &r.entries[k]
		e.seg.count--
		if e.acked {
			e.seg.acked--
		} else {
			e.seg.unacked--
		}
	}
	r.entries = append(r.entries[:i], r.entries[j:]...)
}

// segEntries returns the index range of s's entries. A segment's records
// are a contiguous run of ids because segments are filled one after the
// other and nothing is ever moved.
func (r *Ring) segEntries(s *segment) (int, int) {
	i := sort.Search(len(r.entries), func(k int) bool { return r.entries[k].seg.seq >= s.seq })
	j := i
	for j < len(r.entries) && r.entries[j].seg == s {
		j++
	}
	return i, j
}

// usageLocked returns the bytes accounted for the ring's files.
func (r *Ring) usageLocked() int64 {
	u := int64(0)
	if a := r.ackAlloc.Load(); a > 0 {
		u += a + r.ackLogSize // room for the checkpoint that replaces it
	}
	for _, s := range r.segs {
		u += s.alloc + s.idxAlloc
		if !s.sealed {
			u += roundUp(idxFileSize(s.count), blockSize)
		}
	}
	return u
}
