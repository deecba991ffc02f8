package h264

import (
	"errors"
	"fmt"
	"io"

	"github.com/kvscamd/kvscamd/media"
)

// readChunk is how much the Reader asks its source for at a time.
const readChunk = 64 << 10

// Reader reads access units from an Annex-B byte stream, such as a file or
// an encoder's stdout. Memory stays bounded by MaxNALUSize plus one access
// unit whatever the input holds.
//
// Each access unit Next returns is freshly allocated and owned by the
// caller; NextMem hands them out in a pool's memory instead. After an
// error wrapping ErrTooLarge the offending data has been skipped and Next
// may be called again; other errors come from the underlying reader.
type Reader struct {
	r   io.Reader
	buf []byte
	off int // start of unconsumed data in buf
	n   int // end of valid data in buf
	// scan is where the search for the next start code resumes, so that
	// refilling the buffer does not rescan bytes already looked at.
	scan    int
	synced  bool // a start code has been seen
	skipped int64
	eof     bool

	data   []byte // the pending access unit's NAL units, back to back
	ends   []int  // end offset of each NAL unit in data
	hasVCL bool

	pool *media.FramePool
}

// NewReader returns a Reader that reads from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, readChunk)}
}

// Skipped reports how many bytes were discarded because they came before
// the first start code or belonged to an oversized unit.
func (r *Reader) Skipped() int64 { return r.skipped }

// UsePool makes NextMem take its memory from p.
func (r *Reader) UsePool(p *media.FramePool) { r.pool = p }

// Next returns the next complete access unit, or io.EOF after the last.
func (r *Reader) Next() ([][]byte, error) {
	m, err := r.NextMem()
	if m == nil {
		return nil, err
	}
	return m.NALUs, err
}

// NextMem is Next with the access unit in memory of the Reader's pool (see
// UsePool; without one it is allocated). The caller attaches it to a
// Frame, whose consumer releases it.
func (r *Reader) NextMem() (*media.FrameMem, error) {
	for {
		nalu, err := r.nextNALU()
		if errors.Is(err, io.EOF) {
			if r.hasVCL {
				return r.take(), nil
			}
			r.reset()
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if startsAccessUnit(r.hasVCL, nalu) {
			au := r.take()
			if err := r.add(nalu); err != nil {
				return au, nil // the new unit's error surfaces with the next call
			}
			return au, nil
		}
		if err := r.add(nalu); err != nil {
			r.reset()
			return nil, err
		}
	}
}

func (r *Reader) add(nalu []byte) error {
	if len(r.data)+len(nalu) > MaxAccessUnitSize || len(r.ends) >= MaxNALUsPerAccessUnit {
		r.skipped += int64(len(r.data) + len(nalu))
		return fmt.Errorf("%w: access unit over %d bytes or %d NAL units, dropped", ErrTooLarge, MaxAccessUnitSize, MaxNALUsPerAccessUnit)
	}
	r.data = append(r.data, nalu...)
	r.ends = append(r.ends, len(r.data))
	if Type(nalu).IsVCL() {
		r.hasVCL = true
	}
	return nil
}

// take hands out the pending access unit in memory of its own. With a
// pool the pending buffer itself is handed out, and the pooled one it is
// swapped for collects the next unit: no copy, no allocation once the pool
// has buffers as large as the stream's key frames.
func (r *Reader) take() *media.FrameMem {
	m := r.pool.Get()
	if r.pool != nil {
		m.Data, r.data = r.data, m.Data[:0]
	} else {
		m.Data = append([]byte(nil), r.data...)
	}
	start := 0
	for _, end := range r.ends {
		m.NALUs = append(m.NALUs, m.Data[start:end:end])
		start = end
	}
	r.reset()
	return m
}

func (r *Reader) reset() {
	r.data = r.data[:0]
	r.ends = r.ends[:0]
	r.hasVCL = false
}

// nextNALU returns the next NAL unit; it aliases r.buf and is valid until
// the next call.
func (r *Reader) nextNALU() ([]byte, error) {
	for {
		if !r.synced {
			s, e := startCode(r.buf[:r.n], r.off)
			if s >= 0 {
				r.skipped += int64(len(trimZeros(r.buf[r.off:s])))
				r.off, r.scan, r.synced = e, e, true
				continue
			}
			// Keep two bytes: they may be the start of a start code.
			if keep := r.n - 2; keep > r.off {
				r.skipped += int64(len(trimZeros(r.buf[r.off:keep])))
				r.off = keep
			}
		} else {
			s, e := startCode(r.buf[:r.n], r.scan)
			if s >= 0 {
				nalu := trimZeros(r.buf[r.off:s])
				r.off, r.scan = e, e
				if len(nalu) == 0 {
					continue
				}
				return nalu, nil
			}
			if r.eof {
				nalu := trimZeros(r.buf[r.off:r.n])
				r.off, r.scan = r.n, r.n
				if len(nalu) == 0 {
					return nil, io.EOF
				}
				return nalu, nil
			}
			// Resume the search just before the end: a start code may
			// straddle the refill.
			r.scan = max(r.off, r.n-2)
			if r.n-r.off > MaxNALUSize {
				r.skipped += int64(r.n - r.off)
				r.synced = false
				r.off = r.n
				return nil, fmt.Errorf("%w: NAL unit over %d bytes, skipped", ErrTooLarge, MaxNALUSize)
			}
		}
		if r.eof {
			return nil, io.EOF
		}
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
}

// fill reads more input, first moving unconsumed bytes to the front and
// growing the buffer when a single NAL unit needs more room.
func (r *Reader) fill() error {
	if r.off > 0 {
		copy(r.buf, r.buf[r.off:r.n])
		r.n -= r.off
		r.scan -= r.off
		r.off = 0
	}
	if len(r.buf)-r.n < readChunk/2 {
		nb := make([]byte, 2*len(r.buf))
		copy(nb, r.buf[:r.n])
		r.buf = nb
	}
	m, err := r.r.Read(r.buf[r.n:])
	r.n += m
	if errors.Is(err, io.EOF) {
		r.eof = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("h264: read: %w", err)
	}
	return nil
}
