package ring

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// streamHead is how much of a record NextStream holds in memory: the
// record header, the fragment's prefix and stream header, and the start of
// its cluster. The rest stays in the segment file until the caller reads
// it through the Body. An uploader that holds a whole record per fragment
// keeps one to two fragments' worth of memory (1–3 MB at 4 Mbit/s) for
// bytes the page cache already has.
const streamHead = 64 << 10

// minClusterHead is the least of the cluster the head must hold: its
// Timecode element, which a reader may rewrite (Fragment.Rebase).
const minClusterHead = 64

// ErrEvicted is returned by Body.Read when the record was evicted or freed
// after NextStream returned it: the bytes still to come are gone.
var ErrEvicted = errors.New("ring: record evicted while it was being read")

// Body is the part of a record's cluster that NextStream left on disk,
// read in order through Read. It holds no file open between reads: each
// read takes the segment for as long as the system call lasts and checks
// afterwards that the record is still indexed, so a Body that is never
// closed costs nothing but its head buffer, and eviction never waits for
// it. Close lends the head buffer (the fragment's Header and Cluster) to
// the next NextStream; neither may be read after it.
type Body struct {
	r    *Ring
	e    entry
	off  int64 // file offset of the next byte
	left int64
	head []byte
	pool *readBufs // where head goes back to
}

// NextStream is Next for a reader that sends the fragment on rather than
// keeping it: the fragment's Cluster holds only the first bytes of the
// cluster (the whole cluster when it is small) and body yields the rest.
// The whole record is verified before it is returned, as Next does, by
// streaming it through the head buffer; a record that fails is skipped
// and counted the same way. Memory per reader is streamHead, whatever the
// fragment's size.
func (r *Ring) NextStream(ctx context.Context, from ID) (ID, fragmenter.Fragment, *Body, error) {
	return r.next(ctx, from, true)
}

// readHead verifies the record at e and reads its head. The caller holds a
// reference on e.seg.
func (r *Ring) readHead(e *entry) (fragmenter.Fragment, *Body, error) {
	var f fragmenter.Fragment
	size := e.size()
	buf := r.heads.get(int(min(size, streamHead)))
	if err := e.verifyThrough(buf); err != nil {
		r.heads.put(buf)
		return f, nil, err
	}
	if _, err := e.seg.f.ReadAt(buf, e.off); err != nil {
		r.heads.put(buf)
		return f, nil, fmt.Errorf("read %s at %d: %w", e.seg.path, e.off, err)
	}
	if err := e.checkHeader(buf[:recHeaderSize]); err != nil {
		r.heads.put(buf)
		return f, nil, err
	}
	err := f.UnmarshalHead(buf[recHeaderSize:], int(e.plen))
	if int64(len(buf)) < size && (err != nil || len(f.Cluster) < minClusterHead) {
		// A stream header too large to leave room in the head buffer:
		// the whole record in memory, as Next reads it.
		r.heads.put(buf)
		f, err := r.read(e)
		if err != nil {
			return f, nil, err
		}
		return f, &Body{r: r, e: *e, head: f.Cluster, pool: &r.bufs}, nil
	}
	if err != nil {
		r.heads.put(buf)
		return f, nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return f, &Body{r: r, e: *e, off: e.off + int64(len(buf)), left: size - int64(len(buf)), head: buf, pool: &r.heads}, nil
}

// verifyThrough checks e's header and payload checksum, reading the record
// through buf.
func (e *entry) verifyThrough(buf []byte) error {
	var sum uint32
	for off, end := e.off, e.off+e.size(); off < end; {
		n := min(end-off, int64(len(buf)))
		if _, err := e.seg.f.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("read %s at %d: %w", e.seg.path, off, err)
		}
		b := buf[:n]
		if off == e.off {
			if err := e.checkHeader(b[:recHeaderSize]); err != nil {
				return err
			}
			b = b[recHeaderSize:]
		}
		sum = crc32.Update(sum, castagnoli, b)
		off += n
	}
	if sum != e.pcrc {
		return fmt.Errorf("%w: payload checksum mismatch", errCorrupt)
	}
	return nil
}

// Len is how many bytes are left to read.
func (b *Body) Len() int64 { return b.left }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.left)]
	r := b.r
	r.mu.Lock()
	if !b.indexedLocked() {
		r.mu.Unlock()
		return 0, fmt.Errorf("record %d: %w", b.e.id, ErrEvicted)
	}
	b.e.seg.refs++
	r.mu.Unlock()
	n, err := b.e.seg.f.ReadAt(p, b.off)
	r.mu.Lock()
	still := b.indexedLocked()
	r.mu.Unlock()
	r.release(b.e.seg)
	if err != nil {
		return 0, fmt.Errorf("ring: read %s at %d: %w", b.e.seg.path, b.off, err)
	}
	if !still {
		// Eviction or a punched hole may have changed the bytes just read.
		return 0, fmt.Errorf("record %d: %w", b.e.id, ErrEvicted)
	}
	b.off += int64(n)
	b.left -= int64(n)
	return n, nil
}

// indexedLocked reports whether b's record is still in the index. r.mu is
// held.
func (b *Body) indexedLocked() bool {
	r := b.r
	if r.closed || b.e.seg.gone {
		return false
	}
	i := r.find(b.e.id)
	return i >= 0 && r.entries[i].seg == b.e.seg && r.entries[i].off == b.e.off
}

// Close hands the head buffer back; the fragment NextStream returned with
// b must not be read after it. Close is idempotent.
func (b *Body) Close() {
	if b.pool != nil {
		b.pool.put(b.head)
		b.pool = nil
	}
	b.head = nil
	b.left = 0
}
