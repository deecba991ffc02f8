package h264

import (
	"errors"
	"fmt"
)

// NALUType is the nal_unit_type of a NAL unit header (ITU-T H.264 table 7-1).
type NALUType uint8

// NAL unit types the pipeline looks at.
const (
	NALUNonIDR      NALUType = 1
	NALUIDR         NALUType = 5
	NALUSEI         NALUType = 6
	NALUSPS         NALUType = 7
	NALUPPS         NALUType = 8
	NALUAUD         NALUType = 9
	NALUEndOfSeq    NALUType = 10
	NALUEndOfStream NALUType = 11
	NALUFiller      NALUType = 12
)

// Limits that bound memory on hostile or broken input.
const (
	// MaxNALUSize bounds one NAL unit. A 1080p intra picture from a camera
	// encoder is well below 1 MiB; 8 MiB leaves room for 4K at high rates.
	MaxNALUSize = 8 << 20
	// MaxAccessUnitSize bounds one access unit (all its NAL units).
	MaxAccessUnitSize = 8 << 20
	// MaxNALUsPerAccessUnit bounds the NAL units of one picture. Encoders
	// that cut pictures into many slices stay below a few dozen.
	MaxNALUsPerAccessUnit = 128
)

// Errors the parsers wrap.
var (
	ErrNoStartCode = errors.New("h264: data does not start with an Annex-B start code")
	ErrTooLarge    = errors.New("h264: size limit exceeded")
)

// Type returns the type of a NAL unit; an empty unit reports type 0.
func Type(nalu []byte) NALUType {
	if len(nalu) == 0 {
		return 0
	}
	return NALUType(nalu[0] & 0x1f)
}

// IsVCL reports whether t carries picture data (a slice).
func (t NALUType) IsVCL() bool { return t >= 1 && t <= 5 }

func (t NALUType) String() string {
	switch t {
	case NALUNonIDR:
		return "non-IDR slice"
	case NALUIDR:
		return "IDR slice"
	case NALUSEI:
		return "SEI"
	case NALUSPS:
		return "SPS"
	case NALUPPS:
		return "PPS"
	case NALUAUD:
		return "AUD"
	case NALUEndOfSeq:
		return "end of sequence"
	case NALUEndOfStream:
		return "end of stream"
	case NALUFiller:
		return "filler"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// IsIDR reports whether an access unit holds an IDR picture, the only kind
// of picture a fragment may start with.
func IsIDR(au [][]byte) bool {
	for _, n := range au {
		if Type(n) == NALUIDR {
			return true
		}
	}
	return false
}

// startCode finds the next 00 00 01 in b at or after from. It returns the
// index of the first zero and the index just past the 01, or -1, -1.
func startCode(b []byte, from int) (start, end int) {
	for i := from; i+2 < len(b); {
		switch {
		case b[i+2] > 1:
			i += 3
		case b[i+2] == 0:
			i++
		case b[i] == 0 && b[i+1] == 0: // b[i+2] == 1
			return i, i + 3
		default:
			i += 3
		}
	}
	return -1, -1
}

// trimZeros drops the trailing zero bytes that precede a four-byte start
// code (or pad the stream); they are not part of the NAL unit.
func trimZeros(n []byte) []byte {
	for len(n) > 0 && n[len(n)-1] == 0 {
		n = n[:len(n)-1]
	}
	return n
}

// SplitAnnexB appends the NAL units of an Annex-B buffer to dst and returns
// it. The units alias b. Leading zero bytes are allowed; anything else
// before the first start code is an error, and empty units are skipped.
func SplitAnnexB(b []byte, dst [][]byte) ([][]byte, error) {
	s, e := startCode(b, 0)
	if s < 0 || len(trimZeros(b[:s])) != 0 {
		return dst, ErrNoStartCode
	}
	for {
		ns, ne := startCode(b, e)
		end := ns
		if ns < 0 {
			end = len(b)
		}
		if n := trimZeros(b[e:end]); len(n) > 0 {
			if len(n) > MaxNALUSize {
				return dst, fmt.Errorf("%w: NAL unit of %d bytes, limit %d", ErrTooLarge, len(n), MaxNALUSize)
			}
			dst = append(dst, n)
		}
		if ns < 0 {
			return dst, nil
		}
		e = ne
	}
}

// firstMBIsZero reports whether a slice NAL unit's first_mb_in_slice is 0,
// i.e. it is the first slice of a new picture. first_mb_in_slice is the
// first Exp-Golomb field after the one-byte header; the value 0 is coded as
// a single 1 bit.
func firstMBIsZero(nalu []byte) bool {
	return len(nalu) > 1 && nalu[1]&0x80 != 0
}

// startsAccessUnit reports whether nalu begins a new access unit, given
// that the access unit collected so far already holds a picture (hasVCL).
// It follows H.264 7.4.1.2.3 for streams without arbitrary slice order:
// delimiters, parameter sets and SEI after a picture, or the first slice of
// another picture, open the next access unit.
func startsAccessUnit(hasVCL bool, nalu []byte) bool {
	if !hasVCL {
		return false
	}
	switch t := Type(nalu); {
	case t == NALUAUD, t == NALUSPS, t == NALUPPS, t == NALUSEI, t >= 14 && t <= 18:
		return true
	case t.IsVCL():
		return firstMBIsZero(nalu)
	}
	return false
}
