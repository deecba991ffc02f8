package ring

import (
	"encoding/binary"
	"hash/crc32"
	"time"
)

// castagnoli is CRC-32C, which has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// blockSize is the allocation unit assumed for space accounting and hole
// punching; every file is counted rounded up to it.
const blockSize = 4096

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// Segment header: magic(8) seq(8) baseID(8) reserved(4) crc(4).
const (
	segMagic      = "KVSRSEG1"
	segHeaderSize = 32
)

// segHeader starts every segment file. BaseID is the id the next append got
// when the segment was created; it keeps ids from being reused after every
// record of a ring has been evicted.
type segHeader struct {
	Seq    uint64
	BaseID ID
}

func (h segHeader) marshal() []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	binary.LittleEndian.PutUint64(b[8:], h.Seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.BaseID))
	binary.LittleEndian.PutUint32(b[28:], crc(b[:28]))
	return b
}

func (h *segHeader) unmarshal(b []byte) bool {
	if len(b) < segHeaderSize || string(b[:8]) != segMagic ||
		binary.LittleEndian.Uint32(b[28:]) != crc(b[:28]) {
		return false
	}
	h.Seq = binary.LittleEndian.Uint64(b[8:])
	h.BaseID = ID(binary.LittleEndian.Uint64(b[16:]))
	return true
}

// Record header (48 bytes, little endian):
//
//	0  magic "KVRR"
//	4  payload length u32
//	8  id u64
//	16 segment seq u64 (a record copied from another segment is refused)
//	24 timecode i64 (epoch ms)
//	32 duration i64 (ns)
//	40 payload CRC-32C u32
//	44 header CRC-32C u32 over bytes 0..43
const (
	recMagic      = "KVRR"
	recHeaderSize = 48
)

type recHeader struct {
	Len      uint32
	ID       ID
	Seq      uint64
	Timecode int64
	Duration time.Duration
	CRC      uint32
}

func (h *recHeader) put(b []byte) {
	copy(b, recMagic)
	binary.LittleEndian.PutUint32(b[4:], h.Len)
	binary.LittleEndian.PutUint64(b[8:], uint64(h.ID))
	binary.LittleEndian.PutUint64(b[16:], h.Seq)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.Timecode))
	binary.LittleEndian.PutUint64(b[32:], uint64(h.Duration))
	binary.LittleEndian.PutUint32(b[40:], h.CRC)
	binary.LittleEndian.PutUint32(b[44:], crc(b[:44]))
}

// parse decodes a header and reports whether its magic and checksum hold.
func (h *recHeader) parse(b []byte) bool {
	if len(b) < recHeaderSize || string(b[:4]) != recMagic ||
		binary.LittleEndian.Uint32(b[44:]) != crc(b[:44]) {
		return false
	}
	h.Len = binary.LittleEndian.Uint32(b[4:])
	h.ID = ID(binary.LittleEndian.Uint64(b[8:]))
	h.Seq = binary.LittleEndian.Uint64(b[16:])
	h.Timecode = int64(binary.LittleEndian.Uint64(b[24:]))
	h.Duration = time.Duration(binary.LittleEndian.Uint64(b[32:]))
	h.CRC = binary.LittleEndian.Uint32(b[40:])
	return true
}

// maxPayload bounds a record's payload: the largest fragment encoding plus
// slack for the encoding's fixed prefix. Larger lengths mark a header as bad.
const maxPayload = 50_000_000 + 64<<10 + 1024

// Index file: magic(8) seq(8) length(8) count(4) reserved(4), count entries
// of idxEntrySize bytes, then a CRC-32C of everything before it.
const (
	idxMagic      = "KVSRIDX1"
	idxHeaderSize = 32
	idxEntrySize  = 40 // id 8, offset 8, payload len 4, payload crc 4, timecode 8, duration 8
)

func idxFileSize(count int) int64 { return idxHeaderSize + int64(count)*idxEntrySize + 4 }

func marshalIndex(seq uint64, length int64, es []entry) []byte {
	b := make([]byte, idxFileSize(len(es)))
	copy(b, idxMagic)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(length))
	binary.LittleEndian.PutUint32(b[24:], uint32(len(es)))
	p := b[idxHeaderSize:]
	for _, e := range es {
		binary.LittleEndian.PutUint64(p[0:], uint64(e.id))
		binary.LittleEndian.PutUint64(p[8:], uint64(e.off))
		binary.LittleEndian.PutUint32(p[16:], e.plen)
		binary.LittleEndian.PutUint32(p[20:], e.pcrc)
		binary.LittleEndian.PutUint64(p[24:], uint64(e.tc))
		binary.LittleEndian.PutUint64(p[32:], uint64(e.dur))
		p = p[idxEntrySize:]
	}
	binary.LittleEndian.PutUint32(p, crc(b[:len(b)-4]))
	return b
}

// unmarshalIndex decodes an index file and checks it against the segment it
// describes: sequence number, ordering, and that every record lies inside
// the file. ok=false means the index must be rebuilt from the data.
func unmarshalIndex(b []byte, seq uint64, fileSize int64) (length int64, es []entry, ok bool) {
	if len(b) < idxHeaderSize+4 || string(b[:8]) != idxMagic ||
		binary.LittleEndian.Uint32(b[len(b)-4:]) != crc(b[:len(b)-4]) {
		return 0, nil, false
	}
	if binary.LittleEndian.Uint64(b[8:]) != seq {
		return 0, nil, false
	}
	length = int64(binary.LittleEndian.Uint64(b[16:]))
	count := int(binary.LittleEndian.Uint32(b[24:]))
	if length < segHeaderSize || length > fileSize || int64(len(b)) != idxFileSize(count) {
		return 0, nil, false
	}
	es = make([]entry, count)
	p := b[idxHeaderSize:]
	prevEnd, prevID := int64(segHeaderSize), ID(0)
	for i := range es {
		e := entry{
			id:   ID(binary.LittleEndian.Uint64(p[0:])),
			off:  int64(binary.LittleEndian.Uint64(p[8:])),
			plen: binary.LittleEndian.Uint32(p[16:]),
			pcrc: binary.LittleEndian.Uint32(p[20:]),
			tc:   int64(binary.LittleEndian.Uint64(p[24:])),
			dur:  time.Duration(binary.LittleEndian.Uint64(p[32:])),
		}
		if e.id <= prevID || e.off < prevEnd || e.plen > maxPayload || e.off+e.size() > length || e.dur < 0 {
			return 0, nil, false
		}
		prevEnd, prevID = e.off+e.size(), e.id
		es[i] = e
		p = p[idxEntrySize:]
	}
	return length, es, true
}

// Ack log slot (32 bytes):
//
//	0  magic 'K' 'A'
//	2  kind: 'W' watermark (every id below ID is acknowledged or gone) or
//	   'A' acknowledged range [ID, ID+Count) or
//	   'I' the identity of the ring the log belongs to (ID), first slot
//	3  reserved
//	4  count u32
//	8  id u64
//	16 CRC-32C u32 over bytes 0..15
//	20 reserved (zero)
const ackSlotSize = 32

type ackSlot struct {
	Kind  byte
	Count uint32
	ID    ID
}

func (s ackSlot) put(b []byte) {
	clear(b[:ackSlotSize])
	b[0], b[1], b[2] = 'K', 'A', s.Kind
	binary.LittleEndian.PutUint32(b[4:], s.Count)
	binary.LittleEndian.PutUint64(b[8:], uint64(s.ID))
	binary.LittleEndian.PutUint32(b[16:], crc(b[:16]))
}

func (s *ackSlot) parse(b []byte) bool {
	if b[0] != 'K' || b[1] != 'A' || (b[2] != 'W' && b[2] != 'A' && b[2] != 'I') ||
		binary.LittleEndian.Uint32(b[16:]) != crc(b[:16]) {
		return false
	}
	s.Kind = b[2]
	s.Count = binary.LittleEndian.Uint32(b[4:])
	s.ID = ID(binary.LittleEndian.Uint64(b[8:]))
	return true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
