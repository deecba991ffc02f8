package h264

import (
	"bytes"
	"errors"
	"fmt"

	mch264 "github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// SPSInfo is what the pipeline needs to know of a sequence parameter set.
type SPSInfo struct {
	Profile, Constraints, Level uint8
	Width, Height               int
	// Chroma format and bit depths are written into the decoder
	// configuration record of the High profiles.
	ChromaFormat, BitDepthLuma, BitDepthChroma uint8
}

// ParseSPS reads an SPS NAL unit (header byte included).
func ParseSPS(nalu []byte) (SPSInfo, error) {
	if Type(nalu) != NALUSPS || len(nalu) < 4 {
		return SPSInfo{}, fmt.Errorf("h264: parse SPS: not an SPS NAL unit (%v, %d bytes)", Type(nalu), len(nalu))
	}
	var s mch264.SPS
	if err := s.Unmarshal(nalu); err != nil {
		return SPSInfo{}, fmt.Errorf("h264: parse SPS: %w", err)
	}
	info := SPSInfo{
		Profile:        nalu[1],
		Constraints:    nalu[2],
		Level:          nalu[3],
		Width:          s.Width(),
		Height:         s.Height(),
		ChromaFormat:   1,
		BitDepthLuma:   8,
		BitDepthChroma: 8,
	}
	if hasChromaInfo(info.Profile) {
		info.ChromaFormat = uint8(s.ChromaFormatIdc)
		info.BitDepthLuma = uint8(s.BitDepthLumaMinus8 + 8)
		info.BitDepthChroma = uint8(s.BitDepthChromaMinus8 + 8)
	}
	if info.Width <= 0 || info.Height <= 0 || info.Width > maxDimension || info.Height > maxDimension {
		return SPSInfo{}, fmt.Errorf("h264: parse SPS: picture size %dx%d out of range", info.Width, info.Height)
	}
	return info, nil
}

// maxDimension bounds the picture size an SPS may claim (8K and a margin).
const maxDimension = 16384

// hasChromaInfo reports whether a profile's SPS carries chroma_format_idc,
// and so whether its decoder configuration record carries the extension
// fields of ISO/IEC 14496-15 5.3.3.1.
func hasChromaInfo(profile uint8) bool {
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		return true
	}
	return false
}

// DecoderConfig is an AVCDecoderConfigurationRecord (ISO/IEC 14496-15
// 5.3.3.1): the parameter sets a decoder needs before the first picture,
// stored by Matroska as the track's CodecPrivate.
type DecoderConfig struct {
	SPS [][]byte
	PPS [][]byte
}

// Limits of the record's own fields.
const (
	maxParamSets  = 31        // five bits of numOfSequenceParameterSets
	maxParamSetSz = 1<<16 - 1 // sixteen-bit length fields
)

// ErrBadConfig is wrapped by DecoderConfig errors.
var ErrBadConfig = errors.New("h264: bad decoder configuration record")

// Equal reports whether two configurations hold the same parameter sets.
func (c DecoderConfig) Equal(o DecoderConfig) bool {
	return EqualNALUs(c.SPS, o.SPS) && EqualNALUs(c.PPS, o.PPS)
}

// EqualNALUs reports whether two lists hold the same NAL units in the same
// order.
func EqualNALUs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Marshal encodes the record. Profile, compatibility and level come from
// the first SPS; NAL unit lengths in the stream are four bytes.
func (c DecoderConfig) Marshal() ([]byte, error) {
	if len(c.SPS) == 0 || len(c.PPS) == 0 {
		return nil, fmt.Errorf("%w: need at least one SPS and one PPS, have %d and %d", ErrBadConfig, len(c.SPS), len(c.PPS))
	}
	if len(c.SPS) > maxParamSets || len(c.PPS) > 255 {
		return nil, fmt.Errorf("%w: %d SPS / %d PPS, too many", ErrBadConfig, len(c.SPS), len(c.PPS))
	}
	info, err := ParseSPS(c.SPS[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	b := []byte{1, info.Profile, info.Constraints, info.Level, 0xfc | 3, 0xe0 | byte(len(c.SPS))}
	for _, s := range c.SPS {
		if len(s) > maxParamSetSz {
			return nil, fmt.Errorf("%w: SPS of %d bytes", ErrBadConfig, len(s))
		}
		b = append(b, byte(len(s)>>8), byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(len(c.PPS)))
	for _, p := range c.PPS {
		if len(p) > maxParamSetSz {
			return nil, fmt.Errorf("%w: PPS of %d bytes", ErrBadConfig, len(p))
		}
		b = append(b, byte(len(p)>>8), byte(len(p)))
		b = append(b, p...)
	}
	if hasChromaInfo(info.Profile) {
		b = append(b, 0xfc|info.ChromaFormat&3, 0xf8|(info.BitDepthLuma-8)&7, 0xf8|(info.BitDepthChroma-8)&7, 0)
	}
	return b, nil
}

// Unmarshal decodes a record. The parameter sets alias b.
func (c *DecoderConfig) Unmarshal(b []byte) error {
	if len(b) < 7 || b[0] != 1 {
		return fmt.Errorf("%w: %d bytes, version %v", ErrBadConfig, len(b), b[:min(len(b), 1)])
	}
	if b[4]&3 != 3 {
		return fmt.Errorf("%w: NAL length size %d, only 4 is supported", ErrBadConfig, b[4]&3+1)
	}
	var out DecoderConfig
	p := 6
	read := func(n int, dst *[][]byte, what string) error {
		for range n {
			if p+2 > len(b) {
				return fmt.Errorf("%w: truncated %s length", ErrBadConfig, what)
			}
			l := int(b[p])<<8 | int(b[p+1])
			p += 2
			if p+l > len(b) || l == 0 {
				return fmt.Errorf("%w: %s of %d bytes does not fit", ErrBadConfig, what, l)
			}
			*dst = append(*dst, b[p:p+l:p+l])
			p += l
		}
		return nil
	}
	if err := read(int(b[5]&0x1f), &out.SPS, "SPS"); err != nil {
		return err
	}
	if p >= len(b) {
		return fmt.Errorf("%w: truncated before the PPS count", ErrBadConfig)
	}
	n := int(b[p])
	p++
	if err := read(n, &out.PPS, "PPS"); err != nil {
		return err
	}
	if len(out.SPS) == 0 || len(out.PPS) == 0 {
		return fmt.Errorf("%w: no SPS or no PPS", ErrBadConfig)
	}
	*c = out
	return nil
}
