package fragmenter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Fragment is one KVS fragment: a Matroska Cluster that starts with an IDR
// picture, plus the stream header it needs. It is self-contained: writing
// Header followed by Cluster (or, within one segment, further Clusters that
// share the same Header) is a valid live Matroska stream, so a sender can
// start a new PutMedia connection at any fragment.
//
// Ownership: a Fragment's byte slices belong to whoever received it. The
// fragmenter never touches them again; fragments that share a codec
// configuration share one immutable Header slice.
type Fragment struct {
	// Timecode is the cluster's absolute timecode in epoch milliseconds,
	// which is the time of its first (key) frame.
	Timecode int64
	// Duration runs from the first frame to the end of the last frame.
	Duration time.Duration
	// Frames is the number of SimpleBlocks in Cluster.
	Frames int
	// Header is the EBML header, the unknown-size Segment start, Info and
	// Tracks (with the AVCDecoderConfigurationRecord as CodecPrivate).
	Header []byte
	// Cluster is the Cluster element (unknown size) with its SimpleBlocks.
	Cluster []byte

	// Mono is the first frame's capture instant on the monotonic clock
	// of the boot that captured it; zero when the source had none.
	Mono time.Duration
	// WallUnknown marks a fragment captured before the wall clock was
	// synchronised: Timecode is then Mono in milliseconds (time since
	// Boot started), not epoch time, and the fragment must not be
	// uploaded until Rebase has placed it on the wall clock.
	WallUnknown bool
	// Boot is the boot id of the machine run that captured the fragment;
	// monotonic instants of different boots cannot be compared.
	Boot BootID
}

// Time returns the fragment's start as a time.Time.
func (f *Fragment) Time() time.Time { return time.UnixMilli(f.Timecode) }

// End returns the instant the fragment's last frame ends.
func (f *Fragment) End() time.Time { return f.Time().Add(f.Duration) }

// Size is the number of bytes the fragment adds to a stream whose header
// has already been sent.
func (f *Fragment) Size() int { return len(f.Cluster) }

// Limits of the binary encoding; they bound what UnmarshalBinary will
// accept from a damaged or hostile record.
const (
	// MaxHeaderSize bounds Header. A real header is a few hundred bytes;
	// SPS/PPS are at most a few hundred bytes each.
	MaxHeaderSize = 64 << 10
	// MaxClusterSize is the KVS per-fragment limit (50 MB).
	MaxClusterSize = 50_000_000
)

// fragmentMagic and fragmentVersion start every encoded fragment, so that a
// record from another format or version is refused instead of misread.
//
// Version 2 adds the capture metadata of a fragment whose wall time is
// unknown (flags, boot id, monotonic start) after the version 1 prefix.
// Fragments with a known wall time are still written as version 1, so
// rings written by earlier releases and rings read by them stay valid for
// everything that could be uploaded.
const (
	fragmentMagic   = "KVSF"
	fragmentVersion = 1
	fragmentV2      = 2
	// magic, version, timecode, duration, frames, header len, cluster len
	fragmentFixed = 4 + 1 + 8 + 8 + 4 + 4 + 4
	// flags, boot id, monotonic start
	fragmentMeta = 1 + 16 + 8
	// flagWallUnknown is bit 0 of the version 2 flags.
	flagWallUnknown = 1
)

// ErrBadFragment is wrapped by UnmarshalBinary errors.
var ErrBadFragment = errors.New("fragment: bad encoding")

// AppendBinary appends the fragment's binary encoding to b. The layout is a
// fixed little-endian prefix followed by Header and Cluster; it carries no
// checksum because the ring buffer checksums whole records.
func (f *Fragment) AppendBinary(b []byte) ([]byte, error) {
	b, err := f.AppendPrefix(b)
	if err != nil {
		return b, err
	}
	b = append(b, f.Header...)
	b = append(b, f.Cluster...)
	return b, nil
}

// AppendPrefix appends what AppendBinary puts before Header and Cluster:
// a writer that sends the three pieces one after the other (the ring's
// Append) stores the same bytes without copying the cluster.
func (f *Fragment) AppendPrefix(b []byte) ([]byte, error) {
	if len(f.Header) > MaxHeaderSize {
		return b, fmt.Errorf("fragment %d: header of %d bytes exceeds %d", f.Timecode, len(f.Header), MaxHeaderSize)
	}
	if len(f.Cluster) > MaxClusterSize {
		return b, fmt.Errorf("fragment %d: cluster of %d bytes exceeds %d", f.Timecode, len(f.Cluster), MaxClusterSize)
	}
	b = append(b, fragmentMagic...)
	if f.WallUnknown {
		b = append(b, fragmentV2)
	} else {
		b = append(b, fragmentVersion)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(f.Timecode))
	b = binary.LittleEndian.AppendUint64(b, uint64(f.Duration))
	b = binary.LittleEndian.AppendUint32(b, uint32(f.Frames))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Header)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Cluster)))
	if f.WallUnknown {
		b = append(b, flagWallUnknown)
		b = append(b, f.Boot[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(f.Mono))
	}
	return b, nil
}

// MarshalBinary encodes the fragment (see AppendBinary).
func (f *Fragment) MarshalBinary() ([]byte, error) {
	return f.AppendBinary(make([]byte, 0, fragmentFixed+fragmentMeta+len(f.Header)+len(f.Cluster)))
}

// UnmarshalBinary decodes a fragment. Header and Cluster alias b.
func (f *Fragment) UnmarshalBinary(b []byte) error { return f.decode(b, len(b)) }

// UnmarshalHead decodes the first bytes b of an encoding that is total
// bytes long, for a reader that streams the rest of the cluster instead of
// holding it: Header is complete and Cluster holds as much of the cluster
// as b does, both aliasing b. b must reach past the header.
func (f *Fragment) UnmarshalHead(b []byte, total int) error {
	if total < len(b) {
		return fmt.Errorf("%w: %d bytes read of an encoding of %d", ErrBadFragment, len(b), total)
	}
	return f.decode(b, total)
}

// decode parses b, the first bytes of an encoding of total bytes.
func (f *Fragment) decode(b []byte, total int) error {
	if len(b) < fragmentFixed || string(b[:4]) != fragmentMagic {
		return fmt.Errorf("%w: missing %q prefix", ErrBadFragment, fragmentMagic)
	}
	if b[4] != fragmentVersion && b[4] != fragmentV2 {
		return fmt.Errorf("%w: version %d, want %d or %d", ErrBadFragment, b[4], fragmentVersion, fragmentV2)
	}
	tc := int64(binary.LittleEndian.Uint64(b[5:]))
	dur := time.Duration(binary.LittleEndian.Uint64(b[13:]))
	frames := binary.LittleEndian.Uint32(b[21:])
	hl := binary.LittleEndian.Uint32(b[25:])
	cl := binary.LittleEndian.Uint32(b[29:])
	fixed := fragmentFixed
	var meta Fragment
	if b[4] == fragmentV2 {
		fixed += fragmentMeta
		if len(b) < fixed {
			return fmt.Errorf("%w: version 2 metadata cut short", ErrBadFragment)
		}
		m := b[fragmentFixed:fixed]
		meta.WallUnknown = m[0]&flagWallUnknown != 0
		copy(meta.Boot[:], m[1:17])
		meta.Mono = time.Duration(binary.LittleEndian.Uint64(m[17:]))
		if meta.Mono < 0 {
			return fmt.Errorf("%w: negative monotonic start %v", ErrBadFragment, meta.Mono)
		}
	}
	if hl > MaxHeaderSize || cl > MaxClusterSize {
		return fmt.Errorf("%w: header %d / cluster %d bytes out of range", ErrBadFragment, hl, cl)
	}
	if uint64(total-fixed) != uint64(hl)+uint64(cl) {
		return fmt.Errorf("%w: %d payload bytes, header and cluster say %d", ErrBadFragment, total-fixed, uint64(hl)+uint64(cl))
	}
	if len(b) < fixed+int(hl) {
		return fmt.Errorf("%w: %d bytes read end inside the %d-byte header", ErrBadFragment, len(b), hl)
	}
	if dur < 0 || frames > MaxClusterSize {
		return fmt.Errorf("%w: duration %v, %d frames", ErrBadFragment, dur, frames)
	}
	*f = Fragment{
		Timecode:    tc,
		Duration:    dur,
		Frames:      int(frames),
		Header:      b[fixed : fixed+int(hl) : fixed+int(hl)],
		Cluster:     b[fixed+int(hl):],
		Mono:        meta.Mono,
		WallUnknown: meta.WallUnknown,
		Boot:        meta.Boot,
	}
	return nil
}

// FileWriter writes fragments to w as one Matroska file: a fragment's
// header is written whenever it differs from the previous fragment's, so
// a change of codec parameters starts a new Segment.
type FileWriter struct {
	w      io.Writer
	header []byte
	// Fragments and Frames count what was written.
	Fragments, Frames int
}

// NewFileWriter returns a FileWriter that writes to w.
func NewFileWriter(w io.Writer) *FileWriter { return &FileWriter{w: w} }

// WriteFragment appends one fragment.
func (fw *FileWriter) WriteFragment(f *Fragment) error {
	if !bytes.Equal(f.Header, fw.header) {
		if _, err := fw.w.Write(f.Header); err != nil {
			return fmt.Errorf("fragment %d: write header: %w", f.Timecode, err)
		}
		fw.header = bytes.Clone(f.Header)
	}
	if _, err := fw.w.Write(f.Cluster); err != nil {
		return fmt.Errorf("fragment %d: write cluster: %w", f.Timecode, err)
	}
	fw.Fragments++
	fw.Frames += f.Frames
	return nil
}
