package ring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A ring may be configured larger than its filesystem can hold (the
// default ring_size on a small SD card or a tmpfs). It then works within
// its effective capacity: what it holds now plus what the filesystem has
// free, less a spare that keeps the rest of the system writable, and never
// more than Options.Capacity. The effective capacity is measured again
// before every new segment and whenever the filesystem says it is full,
// and segments are sized from it, so a ring on a small filesystem gets
// small segments instead of none at all.

// Spare space left free on the ring's filesystem: a fraction of its size
// within [minSpare, maxSpare].
const (
	spareDivisor = 64
	minSpare     = 256 << 10
	maxSpare     = 64 << 20
)

// Space describes the room a ring directory has on its filesystem.
type Space struct {
	Held  int64 // bytes the ring's files occupy now
	Free  int64 // bytes the ring may still take: free space less the spare
	Total int64 // size of the filesystem
}

// Room returns Held + Free: how large the ring can grow.
func (s Space) Room() int64 { return s.Held + s.Free }

// SpaceOf measures dir (which need not exist yet: its nearest existing
// parent is measured) for `kvscamd check`.
func SpaceOf(dir string) (Space, error) {
	var sp Space
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return sp, fmt.Errorf("ring: read %s: %w", dir, err)
	}
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			sp.Held += allocated(fi)
		}
	}
	p := dir
	for {
		avail, total, err := fsSpace(p)
		if err == nil {
			sp.Free, sp.Total = max(0, avail-spareFor(total)), total
			return sp, nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, os.ErrNotExist) || parent == p {
			return sp, fmt.Errorf("ring: measure free space for %s: %w", dir, err)
		}
		p = parent
	}
}

func spareFor(total int64) int64 { return min(max(total/spareDivisor, minSpare), maxSpare) }

// refreshCapLocked measures the filesystem and sets the effective
// capacity. Without a measurement the configured capacity stands.
func (r *Ring) refreshCapLocked() {
	avail, total, err := fsSpace(r.dir)
	if err != nil {
		r.effCap = r.opts.Capacity
		return
	}
	c := min(r.opts.Capacity, r.usageLocked()+max(0, avail-spareFor(total)))
	if c < r.opts.Capacity && c != r.effCap && !r.warnedCap {
		r.warnedCap = true
		r.log.Warn("ring: ring_size is larger than the filesystem can hold; the ring keeps what fits, oldest video is evicted first",
			"dir", r.dir, "ring_size", r.opts.Capacity, "effective", c, "short_by", r.opts.Capacity-c,
			"fix", "lower ring_size or give state_dir a larger filesystem")
	}
	r.effCap = c
}

// segSizeLocked is the size of the next segment: the configured one, or
// 1/segmentsPerRing of the effective capacity when that is smaller.
func (r *Ring) segSizeLocked() int64 {
	if r.opts.SegmentSize > 0 || r.effCap <= 0 {
		return r.segSize
	}
	s := r.effCap / segmentsPerRing / blockSize * blockSize
	return min(r.segSize, max(s, MinSegmentSize))
}

// newSegmentLocked creates the segment for a record of recLen bytes,
// making room within the effective capacity first. When the filesystem is
// fuller than measured (other files grew meanwhile), it frees acknowledged
// history, then tries smaller segments, and only then evicts the oldest
// video not yet uploaded, which is counted as lost.
func (r *Ring) newSegmentLocked(recLen int64) (*segment, error) {
	r.refreshCapLocked()
	need := roundUp(segHeaderSize+recLen, blockSize)
	size := max(r.segSizeLocked(), need)
	if err := r.makeRoomLocked(size + blockSize); err != nil {
		return nil, err
	}
	for {
		s, err := r.createSegmentLocked(size)
		if err == nil {
			return s, nil
		}
		if !isNoSpace(err) {
			return nil, fmt.Errorf("ring: append to %s: new segment: %w; %s", r.dir, err, fixFor(err, r.dir))
		}
		r.refreshCapLocked()
		switch {
		case r.evictAckedLocked():
		case size > need:
			size = max(need, size/2/blockSize*blockSize)
		case r.evictOldestLocked():
		default:
			return nil, fmt.Errorf("ring: append to %s: new segment: %w; %s", r.dir, err, fixFor(err, r.dir))
		}
	}
}
