package kvslocal

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Matroska element IDs the parser knows (with their length-marker bits).
const (
	idEBML               = 0x1A45DFA3
	idEBMLVersion        = 0x4286
	idEBMLReadVersion    = 0x42F7
	idEBMLMaxIDLength    = 0x42F2
	idEBMLMaxSizeLength  = 0x42F3
	idDocType            = 0x4282
	idDocTypeVersion     = 0x4287
	idDocTypeReadVersion = 0x4285
	idSegment            = 0x18538067
	idSeekHead           = 0x114D9B74
	idInfo               = 0x1549A966
	idTimecodeScale      = 0x2AD7B1
	idTracks             = 0x1654AE6B
	idTrackEntry         = 0xAE
	idTrackNumber        = 0xD7
	idTrackType          = 0x83
	idCodecID            = 0x86
	idCodecPrivate       = 0x63A2
	idCluster            = 0x1F43B675
	idTimecode           = 0xE7
	idPosition           = 0xA7
	idPrevSize           = 0xAB
	idSimpleBlock        = 0xA3
	idBlockGroup         = 0xA0
	idBlock              = 0xA1
	idReferenceBlock     = 0xFB
	idCues               = 0x1C53BB6B
	idChapters           = 0x1043A770
	idAttachments        = 0x1941A469
	idTags               = 0x1254C367
	idTag                = 0x7373
	idSimpleTag          = 0x67C8
	idTagName            = 0x45A3
	idTagString          = 0x4487
	idVoid               = 0xEC
	idCRC32              = 0xBF

	unknownSize = -1
)

// Parser limits that are not service quotas but keep memory bounded.
const (
	maxEBMLHeaderSize = 4 << 10
	// maxMetaElement bounds Info, Tracks, Tags and skipped level-1
	// elements (CodecPrivate alone may be 1 MiB).
	maxMetaElement = 2 << 20
	// maxCodecPrivate is the producer SDK's CPD limit.
	maxCodecPrivate = 1 << 20
	maxTagName      = 128
	maxTagValue     = 256
	// readBufferSize is the per-connection read-ahead.
	readBufferSize = 32 << 10

	codecH264    = "V_MPEG4/ISO/AVC"
	codecH265    = "V_MPEGH/ISO/HEVC"
	tagEndOfFrag = "AWS_KINESISVIDEO_END_OF_FRAGMENT"
)

// Tag names producers write themselves; every other name starting with
// "AWS" is reserved for the service.
var producerAWSTags = map[string]bool{
	tagEndOfFrag:                        true,
	"AWS_KINESISVIDEO_IMAGE_GENERATION": true,
	"AWS_KINESISVIDEO_IMAGE_PREFIX":     true,
	"AWS_KINESISVIDEO_NOTIFICATION":     true,
}

// level1IDs end an unknown-size Cluster when they appear.
var level1IDs = map[uint32]bool{
	idCluster: true, idTags: true, idCues: true, idInfo: true, idTracks: true, idSeekHead: true,
	idChapters: true, idAttachments: true, idEBML: true, idSegment: true,
}

// Ack error codes (ErrorId) and the ErrorCode strings the service sends.
const (
	ErrStreamRead            = 4000
	ErrMaxFragmentSize       = 4001
	ErrMaxFragmentDuration   = 4002
	ErrMaxConnectionDuration = 4003
	ErrFragmentTimecode      = 4004
	ErrMultiTrack            = 4005
	ErrInvalidMKV            = 4006
	ErrInvalidProducerTime   = 4007
	ErrStreamNotActive       = 4008
	ErrFragmentMetadataLimit = 4009
	ErrTrackNumberMismatch   = 4010
	ErrFramesMissingForTrack = 4011
	ErrMoreThanAllowedTracks = 4012
	ErrKMSKeyAccessDenied    = 4500
	ErrStreamDeleted         = 4507
	ErrInternal              = 5000
	ErrArchival              = 5001
)

// ErrorCodes maps ErrorId to the ErrorCode string of ERROR acks.
var ErrorCodes = map[int]string{
	4000: "STREAM_READ_ERROR",
	4001: "MAX_FRAGMENT_SIZE_REACHED",
	4002: "MAX_FRAGMENT_DURATION_REACHED",
	4003: "MAX_CONNECTION_DURATION_REACHED",
	4004: "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
	4005: "MORE_THAN_ONE_TRACK_FOUND",
	4006: "INVALID_MKV_DATA",
	4007: "INVALID_PRODUCER_TIMESTAMP",
	4008: "STREAM_NOT_ACTIVE",
	4009: "FRAGMENT_METADATA_LIMIT_REACHED",
	4010: "TRACK_NUMBER_MISMATCH",
	4011: "FRAMES_MISSING_FOR_TRACK",
	4012: "MORE_THAN_ALLOWED_TRACKS_FOUND",
	4500: "KMS_KEY_ACCESS_DENIED",
	4501: "KMS_KEY_DISABLED",
	4502: "KMS_KEY_VALIDATION_ERROR",
	4503: "KMS_KEY_UNAVAILABLE",
	4504: "KMS_KEY_INVALID_USAGE",
	4505: "KMS_KEY_INVALID_STATE",
	4506: "KMS_KEY_NOT_FOUND",
	4507: "STREAM_DELETED",
	5000: "INTERNAL_ERROR",
	5001: "ARCHIVAL_ERROR",
}

// StreamError is a violation of the PutMedia rules: the server answers it
// with an ERROR ack carrying Code as ErrorId and ends the connection.
type StreamError struct {
	Code int // ErrorId, e.g. ErrInvalidMKV
	Msg  string
	// Timecode of the fragment it concerns, or -1.
	Timecode int64
	// Number is the FragmentNumber of that fragment, when it has one.
	Number string
	// Name overrides ErrorCodes[Code] as the ack's ErrorCode, for refusals
	// the service names but whose ErrorId is not documented.
	Name string
}

// ErrorCode is the ErrorCode string the ERROR ack carries.
func (e *StreamError) ErrorCode() string {
	if e.Name != "" {
		return e.Name
	}
	return ErrorCodes[e.Code]
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("ErrorId %d (%s): %s", e.Code, e.ErrorCode(), e.Msg)
}

// ErrorCodeMinFragmentDuration is the ErrorCode of a fragment refused for
// being shorter than the minimum. The quotas page names the refusal
// (MIN_FRAGMENT_DURATION_REACHED) but no ErrorId; it is sent here with
// ErrorId 4002, the duration code, so that a producer treats it like the
// other duration violation (a bug in how it cuts fragments, not a
// transient failure).
const ErrorCodeMinFragmentDuration = "MIN_FRAGMENT_DURATION_REACHED"

// mkvConfig holds what a parser checks against.
type mkvConfig struct {
	MaxFragmentSize     int64
	MaxFragmentDuration time.Duration
	MinFragmentDuration time.Duration // <= 0: no check
	MaxTracks           int
	MaxMetadata         int
	MaxFuture           time.Duration // < 0: no check
	Relative            bool
	ProducerStart       time.Duration // since the epoch, RELATIVE mode
	Now                 func() time.Time
}

type track struct {
	number  uint64
	typ     uint64
	codec   string
	private []byte
}

// fragment is the Cluster being received.
type fragment struct {
	timecode   int64 // Cluster Timecode as sent
	start      int64 // absolute ns since the epoch
	lastAbs    int64 // absolute ns of the latest frame
	maxRel     int64 // largest block timecode, in ticks
	frames     int
	keyFrames  int
	keyFirst   bool
	perTrack   []int // frames per header track, same order as tracks
	raw        []byte
	ended      bool // the Cluster element is over; completion pending
	tags       map[string]string
	blockCount int

	// Set by the session.
	number     string
	failCode   int   // injected ERROR instead of RECEIVED
	dropAfter  int64 // abort the connection after this many bytes; -1 off
	forceAcked bool  // acknowledged early (Options.AckOpenFragmentAfter)
}

// record summarises the parsed fragment as the Fragment the server keeps
// and CheckStream returns; the caller adds where it arrived.
func (f *fragment) record() Fragment {
	sum := sha256.Sum256(f.raw)
	return Fragment{
		Timecode:      f.timecode,
		ProducerTime:  f.start / 1e6,
		DurationMs:    (f.lastAbs - f.start) / 1e6,
		Frames:        f.frames,
		KeyFrames:     f.keyFrames,
		Bytes:         len(f.raw),
		KeyFrameFirst: f.keyFirst,
		SHA256:        hex.EncodeToString(sum[:]),
		Tags:          f.tags,
	}
}

// fragmentSink receives fragment boundaries. An error it returns stops the
// parser and is returned from run.
type fragmentSink interface {
	fragmentStart(f *fragment) error
	fragmentBytes(f *fragment) error // after each element inside a cluster
	fragmentComplete(f *fragment, reason string) error
}

// parser reads one PutMedia body. It holds at most one fragment's bytes.
type parser struct {
	cfg  mkvConfig
	r    *bufio.Reader
	pos  int64
	sink fragmentSink

	docType     string
	scale       int64 // TimecodeScale in ns
	tracks      []track
	sawInfo     bool
	header      []byte // EBML header + Segment start + Info + Tracks, as a playable prefix
	inSegment   bool
	segEnd      int64 // -1: unknown size
	clusterSeen bool
	prevLastAbs int64
	havePrev    bool
	open        *fragment
	// held is a fragment the next Cluster ended, kept until that Cluster's
	// Timecode gives its exact duration for the minimum-duration rule
	// (only with MinFragmentDuration > 0; then two fragments are held).
	held          *fragment
	pendingTags   map[string]string
	spare         []byte // reused fragment buffer
	maxHeldBuffer int    // largest buffer capacity held, for the fuzz test
}

func newParser(r io.Reader, cfg mkvConfig, sink fragmentSink) *parser {
	return &parser{cfg: cfg, r: bufio.NewReaderSize(r, readBufferSize), sink: sink, scale: 1_000_000, segEnd: unknownSize}
}

func invalid(format string, a ...any) error {
	return &StreamError{Code: ErrInvalidMKV, Msg: fmt.Sprintf(format, a...), Timecode: -1}
}

// errTruncated marks a body that ended inside an element.
var errTruncated = errors.New("body ended inside an element")

func (p *parser) readByte() (byte, error) {
	b, err := p.r.ReadByte()
	if err == nil {
		p.pos++
		if p.open != nil && !p.open.ended {
			p.open.raw = append(p.open.raw, b)
		}
	}
	return b, err
}

// readFull reads n bytes; into the open fragment's buffer when capturing,
// else into a fresh slice (callers bound n).
func (p *parser) readFull(n int64, capture bool) ([]byte, error) {
	if capture {
		f := p.open
		off := len(f.raw)
		if int64(cap(f.raw)-off) < n {
			nb := make([]byte, off, grow(int64(cap(f.raw)), int64(off)+n, p.cfg.MaxFragmentSize+16))
			copy(nb, f.raw)
			f.raw = nb
		}
		f.raw = f.raw[:off+int(n)]
		m, err := io.ReadFull(p.r, f.raw[off:])
		p.pos += int64(m)
		if err != nil {
			f.raw = f.raw[:off+m]
			return nil, truncated(err)
		}
		p.noteBuf(cap(f.raw))
		return f.raw[off:], nil
	}
	b := make([]byte, n)
	m, err := io.ReadFull(p.r, b)
	p.pos += int64(m)
	if err != nil {
		return nil, truncated(err)
	}
	return b, nil
}

func grow(have, need, limit int64) int64 {
	c := have * 2
	if c < 64<<10 {
		c = 64 << 10
	}
	if c < need {
		c = need
	}
	if c > limit && need <= limit {
		c = limit
	}
	return c
}

func (p *parser) noteBuf(c int) {
	if c > p.maxHeldBuffer {
		p.maxHeldBuffer = c
	}
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errTruncated
	}
	return err
}

func (p *parser) skip(n int64) error {
	m, err := p.r.Discard(int(n))
	p.pos += int64(m)
	if err != nil {
		return truncated(err)
	}
	return nil
}

// peekID returns the next element ID without consuming it.
func (p *parser) peekID() (uint32, int, error) {
	b, err := p.r.Peek(1)
	if err != nil {
		return 0, 0, err
	}
	l := idLength(b[0])
	if l == 0 {
		return 0, 0, invalid("byte 0x%02x at offset %d cannot start an element ID", b[0], p.pos)
	}
	b, err = p.r.Peek(l)
	if err != nil {
		return 0, 0, errTruncated
	}
	var id uint32
	for _, c := range b {
		id = id<<8 | uint32(c)
	}
	return id, l, nil
}

func idLength(b byte) int {
	switch {
	case b&0x80 != 0:
		return 1
	case b&0x40 != 0:
		return 2
	case b&0x20 != 0:
		return 3
	case b&0x10 != 0:
		return 4
	}
	return 0
}

// readHeader consumes an element ID and size. Size is unknownSize for the
// all-ones value.
func (p *parser) readHeader() (id uint32, size int64, err error) {
	id, l, err := p.peekID()
	if err != nil {
		return 0, 0, err
	}
	for i := 0; i < l; i++ {
		if _, err := p.readByte(); err != nil {
			return 0, 0, errTruncated
		}
	}
	first, err := p.readByte()
	if err != nil {
		return 0, 0, errTruncated
	}
	n := 0
	for n < 8 && first&(0x80>>n) == 0 {
		n++
	}
	if n == 8 {
		return 0, 0, invalid("element 0x%X at offset %d has an invalid size field", id, p.pos)
	}
	v := uint64(first & (0xFF >> (n + 1)))
	allOnes := v == uint64(0xFF>>(n+1))
	for i := 0; i < n; i++ {
		c, err := p.readByte()
		if err != nil {
			return 0, 0, errTruncated
		}
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xFF
	}
	if allOnes {
		return id, unknownSize, nil
	}
	if v > math.MaxInt64/2 {
		return 0, 0, invalid("element 0x%X at offset %d has an absurd size %d", id, p.pos, v)
	}
	return id, int64(v), nil
}

func encodeHeader(id uint32, size int64) []byte {
	var b []byte
	switch {
	case id > 0xFFFFFF:
		b = append(b, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id > 0xFFFF:
		b = append(b, byte(id>>16), byte(id>>8), byte(id))
	case id > 0xFF:
		b = append(b, byte(id>>8), byte(id))
	default:
		b = append(b, byte(id))
	}
	if size < 0 {
		return append(b, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(size))
	v[0] = 0x01 // 8-byte size marker; sizes here stay below 2^56
	return append(b, v[:]...)
}

// child is one element inside a buffered master element.
type child struct {
	id   uint32
	data []byte
}

// children splits a buffered master element body.
func children(b []byte) ([]child, error) {
	var out []child
	for len(b) > 0 {
		l := idLength(b[0])
		if l == 0 || len(b) < l+1 {
			return nil, fmt.Errorf("bad element ID")
		}
		var id uint32
		for _, c := range b[:l] {
			id = id<<8 | uint32(c)
		}
		b = b[l:]
		first := b[0]
		n := 0
		for n < 8 && first&(0x80>>n) == 0 {
			n++
		}
		if n == 8 || len(b) < n+1 {
			return nil, fmt.Errorf("bad size of element 0x%X", id)
		}
		v := uint64(first & (0xFF >> (n + 1)))
		for _, c := range b[1 : n+1] {
			v = v<<8 | uint64(c)
		}
		b = b[n+1:]
		if v > uint64(len(b)) {
			return nil, fmt.Errorf("element 0x%X of %d bytes overruns its parent", id, v)
		}
		out = append(out, child{id, b[:v]})
		b = b[v:]
	}
	return out, nil
}

func readUint(b []byte) (uint64, bool) {
	if len(b) > 8 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, true
}

// run parses the whole body. It returns nil at a clean end of body, an
// *StreamError for a violation, or the read error.
func (p *parser) run() error {
	if err := p.readEBMLHeader(); err != nil {
		if err == io.EOF {
			return nil // empty body
		}
		return p.fix(err)
	}
	if err := p.readSegmentStart(); err != nil {
		return p.fix(err)
	}
	for {
		if p.segEnd >= 0 && p.pos >= p.segEnd {
			if _, _, err := p.peekID(); err == io.EOF {
				return p.finish()
			}
			return p.fix(invalid("data after the end of the Segment (one Segment per PutMedia connection)"))
		}
		id, _, err := p.peekID()
		if err == io.EOF {
			return p.finish()
		}
		if err != nil {
			return p.fix(err)
		}
		if err := p.level1(id); err != nil {
			return p.fix(err)
		}
	}
}

// fix turns truncation into INVALID_MKV_DATA and stamps the timecode of
// the open fragment on violations.
func (p *parser) fix(err error) error {
	if err == errTruncated {
		err = invalid("the body ended inside an element")
	}
	var me *StreamError
	if errors.As(err, &me) && p.open != nil && p.open.timecode >= 0 {
		if me.Timecode == -1 {
			me.Timecode = p.open.timecode
		}
		if me.Number == "" && me.Timecode == p.open.timecode {
			me.Number = p.open.number
		}
	}
	return err
}

func (p *parser) finish() error {
	if err := p.completeHeld(-1); err != nil {
		return err
	}
	if p.open != nil {
		if err := p.complete("end of body"); err != nil {
			return err
		}
	}
	if !p.inSegment {
		return invalid("the body has an EBML header but no Segment")
	}
	return nil
}

func (p *parser) readEBMLHeader() error {
	if _, _, err := p.peekID(); err == io.EOF {
		return io.EOF
	}
	id, size, err := p.readHeader()
	if err != nil {
		return err
	}
	if id != idEBML {
		return invalid("the body must start with an EBML header (1A45DFA3), found element 0x%X", id)
	}
	if size < 0 || size > maxEBMLHeaderSize {
		return invalid("EBML header size %d is not a known size up to %d", size, maxEBMLHeaderSize)
	}
	body, err := p.readFull(size, false)
	if err != nil {
		return err
	}
	kids, err := children(body)
	if err != nil {
		return invalid("EBML header: %v", err)
	}
	p.docType = ""
	for _, c := range kids {
		switch c.id {
		case idDocType:
			p.docType = strings.TrimRight(string(c.data), "\x00")
		case idEBMLReadVersion:
			if v, ok := readUint(c.data); !ok || v > 1 {
				return invalid("EBMLReadVersion %d is not supported", v)
			}
		case idEBMLMaxIDLength:
			if v, ok := readUint(c.data); !ok || v > 4 {
				return invalid("EBMLMaxIDLength %d is over 4", v)
			}
		case idEBMLMaxSizeLength:
			if v, ok := readUint(c.data); !ok || v > 8 {
				return invalid("EBMLMaxSizeLength %d is over 8", v)
			}
		}
	}
	if p.docType != "matroska" && p.docType != "webm" {
		return invalid("EBML DocType %q must be \"matroska\" or \"webm\"", p.docType)
	}
	p.header = append(encodeHeader(idEBML, size), body...)
	return nil
}

func (p *parser) readSegmentStart() error {
	id, _, err := p.peekID()
	if err == io.EOF {
		return invalid("the body ended after the EBML header, before the Segment")
	}
	if err != nil {
		return err
	}
	if id != idSegment {
		return invalid("expected a Segment after the EBML header, found element 0x%X", id)
	}
	_, size, err := p.readHeader()
	if err != nil {
		return err
	}
	p.inSegment = true
	if size >= 0 {
		p.segEnd = p.pos + size
	}
	// Stored files always use an unknown-size Segment, since only some of
	// the clusters may be kept.
	p.header = append(p.header, encodeHeader(idSegment, unknownSize)...)
	return nil
}

func (p *parser) level1(id uint32) error {
	switch id {
	case idCluster:
		return p.cluster()
	case idInfo, idTracks:
		if p.clusterSeen {
			return invalid("element 0x%X after the first Cluster: Info and Tracks must come once, before any Cluster", id)
		}
		_, _, body, err := p.readMeta()
		if err != nil {
			return err
		}
		p.header = append(p.header, encodeHeader(id, int64(len(body)))...)
		p.header = append(p.header, body...)
		if id == idInfo {
			return p.parseInfo(body)
		}
		return p.parseTracks(body)
	case idTags:
		_, _, body, err := p.readMeta()
		if err != nil {
			return err
		}
		return p.parseTags(body)
	case idSeekHead, idCues, idChapters, idAttachments, idVoid, idCRC32:
		_, size, err := p.readHeader()
		if err != nil {
			return err
		}
		if size < 0 {
			return invalid("element 0x%X must have a known size", id)
		}
		if size > p.cfg.MaxFragmentSize {
			return invalid("element 0x%X of %d bytes is too large", id, size)
		}
		return p.skip(size)
	case idEBML, idSegment:
		return invalid("a second EBML header or Segment on one connection: send one Segment per PutMedia request")
	}
	return invalid("unexpected element 0x%X at segment level (offset %d)", id, p.pos)
}

func (p *parser) readMeta() (uint32, int64, []byte, error) {
	id, size, err := p.readHeader()
	if err != nil {
		return 0, 0, nil, err
	}
	if size < 0 || size > maxMetaElement {
		return 0, 0, nil, invalid("element 0x%X must have a known size up to %d bytes, has %d", id, maxMetaElement, size)
	}
	body, err := p.readFull(size, false)
	return id, size, body, err
}

func (p *parser) parseInfo(body []byte) error {
	if p.sawInfo {
		return invalid("more than one Info element")
	}
	p.sawInfo = true
	kids, err := children(body)
	if err != nil {
		return invalid("Info: %v", err)
	}
	for _, c := range kids {
		if c.id == idTimecodeScale {
			v, ok := readUint(c.data)
			if !ok || v < 100 || v > 1_000_000_000 {
				return invalid("TimecodeScale %d ns is outside 100 ns .. 1 s", v)
			}
			p.scale = int64(v)
		}
	}
	return nil
}

func (p *parser) parseTracks(body []byte) error {
	if p.tracks != nil {
		return invalid("more than one Tracks element")
	}
	kids, err := children(body)
	if err != nil {
		return invalid("Tracks: %v", err)
	}
	p.tracks = []track{}
	for _, c := range kids {
		if c.id != idTrackEntry {
			continue
		}
		fields, err := children(c.data)
		if err != nil {
			return invalid("TrackEntry: %v", err)
		}
		var t track
		for _, f := range fields {
			switch f.id {
			case idTrackNumber:
				t.number, _ = readUint(f.data)
			case idTrackType:
				t.typ, _ = readUint(f.data)
			case idCodecID:
				t.codec = strings.TrimRight(string(f.data), "\x00")
			case idCodecPrivate:
				if len(f.data) > maxCodecPrivate {
					return invalid("CodecPrivate of %d bytes exceeds %d", len(f.data), maxCodecPrivate)
				}
				t.private = f.data
			}
		}
		if t.number == 0 {
			return invalid("TrackEntry without a TrackNumber")
		}
		for _, o := range p.tracks {
			if o.number == t.number {
				return invalid("track number %d declared twice", t.number)
			}
		}
		p.tracks = append(p.tracks, t)
	}
	if len(p.tracks) > p.cfg.MaxTracks {
		return &StreamError{Code: ErrMoreThanAllowedTracks, Msg: fmt.Sprintf("%d tracks declared, at most %d allowed", len(p.tracks), p.cfg.MaxTracks), Timecode: -1}
	}
	for _, t := range p.tracks {
		switch t.codec {
		case codecH264:
			if len(t.private) < 7 || t.private[0] != 1 {
				return invalid("track %d (%s) needs CodecPrivate holding an AVCDecoderConfigurationRecord (version 1), has %d bytes", t.number, codecH264, len(t.private))
			}
			return nil
		case codecH265:
			// An HEVCDecoderConfigurationRecord: version 1 and a fixed
			// 23-byte part before its NAL unit arrays.
			if len(t.private) < 23 || t.private[0] != 1 {
				return invalid("track %d (%s) needs CodecPrivate holding an HEVCDecoderConfigurationRecord (version 1, at least 23 bytes), has %d bytes", t.number, codecH265, len(t.private))
			}
			return nil
		}
	}
	return invalid("no track with CodecID %s or %s: the stream must carry H.264 or H.265 video", codecH264, codecH265)
}

func (p *parser) parseTags(body []byte) error {
	kids, err := children(body)
	if err != nil {
		return invalid("Tags: %v", err)
	}
	var names, values []string
	var walk func([]child) error
	walk = func(cs []child) error {
		for _, c := range cs {
			switch c.id {
			case idTag:
				sub, err := children(c.data)
				if err != nil {
					return err
				}
				if err := walk(sub); err != nil {
					return err
				}
			case idSimpleTag:
				sub, err := children(c.data)
				if err != nil {
					return err
				}
				var name, value string
				var nested []child
				for _, s := range sub {
					switch s.id {
					case idTagName:
						name = string(s.data)
					case idTagString:
						value = string(s.data)
					case idSimpleTag:
						nested = append(nested, s)
					}
				}
				names, values = append(names, name), append(values, value)
				if err := walk(nested); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(kids); err != nil {
		return invalid("Tags: %v", err)
	}
	eofr := false
	for i, name := range names {
		if name == tagEndOfFrag {
			eofr = true
			continue
		}
		meta := func(format string, a ...any) error {
			return &StreamError{Code: ErrFragmentMetadataLimit, Msg: fmt.Sprintf(format, a...), Timecode: -1}
		}
		switch {
		case name == "":
			return invalid("SimpleTag without a TagName")
		case len(name) > maxTagName:
			return meta("tag name of %d bytes exceeds %d", len(name), maxTagName)
		case len(values[i]) > maxTagValue:
			return meta("tag %q value of %d bytes exceeds %d", name, len(values[i]), maxTagValue)
		case strings.HasPrefix(name, "AWS") && !producerAWSTags[name]:
			return meta("tag name %q: names starting with AWS are reserved", name)
		}
		if p.pendingTags == nil {
			p.pendingTags = map[string]string{}
		}
		p.pendingTags[name] = values[i]
		if len(p.pendingTags) > p.cfg.MaxMetadata {
			return meta("more than %d metadata tags for one fragment", p.cfg.MaxMetadata)
		}
	}
	if eofr && p.open != nil {
		return p.complete("end-of-fragment tag")
	}
	return nil
}

// complete finishes the open fragment.
func (p *parser) complete(reason string) error {
	f := p.open
	for i, n := range f.perTrack {
		if n == 0 {
			return &StreamError{Code: ErrFramesMissingForTrack, Msg: fmt.Sprintf("fragment has no frames for track %d", p.tracks[i].number), Timecode: f.timecode}
		}
	}
	f.ended = true
	p.open = nil
	p.prevLastAbs, p.havePrev = f.lastAbs, true
	if p.cfg.MinFragmentDuration > 0 && reason == reasonNextCluster {
		// Its duration runs to the next fragment's start, known once the
		// next Cluster's Timecode is read (startFragment).
		p.held = f
		return nil
	}
	if err := p.checkMinDuration(f, p.estimatedDuration(f), true); err != nil {
		return err
	}
	err := p.sink.fragmentComplete(f, reason)
	p.spare = f.raw[:0]
	return err
}

// reasonNextCluster is why a fragment ends when the next Cluster starts.
const reasonNextCluster = "next cluster"

// estimatedDuration is a fragment's duration when no next fragment follows
// on the connection: first to last frame plus one average frame interval
// (the last frame's own). A one-frame fragment has no interval to go by
// and gives -1 (unknown).
func (p *parser) estimatedDuration(f *fragment) time.Duration {
	if f.frames < 2 {
		return -1
	}
	span := f.lastAbs - f.start
	return time.Duration(span + span/int64(f.frames-1))
}

// Slack for the minimum-duration rule, as a divisor of the minimum. Frame
// times carry capture jitter: a 1 s GOP captured live comes as fragments
// of 994-1006 ms start to start, and on a loaded machine one was seen with
// its last frame 930 ms in. How the service measures either is not
// documented, so a fragment measured start to start may be a twentieth
// short (50 ms of 1 s) and one measured by its frames (the last of a
// connection) a quarter: a fragment cut well short, such as a flush at
// shutdown, is still refused.
const (
	exactSlack    = 20
	estimateSlack = 4
)

// checkMinDuration refuses a fragment shorter than the service's minimum,
// less the slack above; d < 0 (unknown) passes.
func (p *parser) checkMinDuration(f *fragment, d time.Duration, estimated bool) error {
	min := p.cfg.MinFragmentDuration
	if estimated {
		min -= min / estimateSlack
	} else {
		min -= min / exactSlack
	}
	if p.cfg.MinFragmentDuration <= 0 || d < 0 || f.forceAcked || d >= min {
		return nil
	}
	return &StreamError{Code: ErrMaxFragmentDuration, Name: ErrorCodeMinFragmentDuration,
		Msg:      fmt.Sprintf("fragment %d lasts %v, under the %v minimum", f.timecode, d, p.cfg.MinFragmentDuration),
		Timecode: f.timecode, Number: f.number}
}

// completeHeld acknowledges the held fragment now that the next one's
// start (ns since the epoch, or -1 when unknown) is known.
func (p *parser) completeHeld(next int64) error {
	f := p.held
	if f == nil {
		return nil
	}
	p.held = nil
	d, estimated := p.estimatedDuration(f), true
	if next >= 0 {
		d, estimated = time.Duration(next-f.start), false
	}
	if err := p.checkMinDuration(f, d, estimated); err != nil {
		return err
	}
	err := p.sink.fragmentComplete(f, reasonNextCluster)
	if p.spare == nil {
		p.spare = f.raw[:0]
	}
	return err
}

func (p *parser) cluster() error {
	if p.tracks == nil {
		return invalid("Cluster before Tracks: the Segment must declare its tracks first")
	}
	if p.open != nil {
		if err := p.complete(reasonNextCluster); err != nil {
			return err
		}
	}
	p.clusterSeen = true
	f := &fragment{timecode: -1, raw: p.spare[:0], perTrack: make([]int, len(p.tracks)), tags: p.pendingTags}
	p.spare = nil
	p.pendingTags = nil
	p.open = f
	_, size, err := p.readHeader()
	if err != nil {
		return err
	}
	end := int64(-1)
	if size >= 0 {
		if size > p.cfg.MaxFragmentSize {
			return &StreamError{Code: ErrMaxFragmentSize, Msg: fmt.Sprintf("Cluster of %d bytes exceeds %d", size, p.cfg.MaxFragmentSize), Timecode: -1}
		}
		end = p.pos + size
	}
	for {
		if end >= 0 && p.pos >= end {
			if p.pos > end {
				return invalid("a Cluster child overruns the Cluster's size")
			}
			break
		}
		id, _, err := p.peekID()
		if err == io.EOF {
			if end >= 0 {
				return errTruncated
			}
			break
		}
		if err != nil {
			return err
		}
		if end < 0 && level1IDs[id] {
			break
		}
		if err := p.clusterChild(); err != nil {
			return err
		}
		if err := p.sink.fragmentBytes(f); err != nil {
			return err
		}
	}
	if f.timecode < 0 {
		return invalid("Cluster without a Timecode")
	}
	f.ended = true
	return nil
}

func (p *parser) clusterChild() error {
	f := p.open
	id, size, err := p.readHeader()
	if err != nil {
		return err
	}
	if size < 0 {
		return invalid("Cluster child 0x%X has an unknown size", id)
	}
	if int64(len(f.raw))+size > p.cfg.MaxFragmentSize {
		return &StreamError{Code: ErrMaxFragmentSize, Msg: fmt.Sprintf("fragment exceeds %d bytes", p.cfg.MaxFragmentSize), Timecode: f.timecode}
	}
	switch id {
	case idTimecode:
		if f.timecode >= 0 {
			return invalid("Cluster with two Timecodes")
		}
		if f.blockCount > 0 {
			return invalid("Cluster Timecode after its first block")
		}
		b, err := p.readFull(size, true)
		if err != nil {
			return err
		}
		v, ok := readUint(b)
		if !ok || v > math.MaxInt64/uint64(p.scale) {
			return &StreamError{Code: ErrFragmentTimecode, Msg: fmt.Sprintf("Cluster Timecode of %d bytes / value %d is out of range", len(b), v), Timecode: -1}
		}
		f.timecode = int64(v)
		return p.startFragment()
	case idPosition, idPrevSize, idVoid, idCRC32:
		if size > 8 && id != idVoid {
			return invalid("Cluster child 0x%X of %d bytes", id, size)
		}
		_, err := p.readFull(size, true)
		return err
	case idSimpleBlock:
		b, err := p.readFull(size, true)
		if err != nil {
			return err
		}
		return p.block(b)
	case idBlockGroup:
		b, err := p.readFull(size, true)
		if err != nil {
			return err
		}
		kids, err := children(b)
		if err != nil {
			return invalid("BlockGroup: %v", err)
		}
		var blk []byte
		ref := false
		for _, c := range kids {
			switch c.id {
			case idBlock:
				blk = c.data
			case idReferenceBlock:
				ref = true
			}
		}
		if blk == nil {
			return invalid("BlockGroup without a Block")
		}
		return p.blockGroup(blk, !ref)
	}
	return invalid("unexpected element 0x%X inside a Cluster", id)
}

func (p *parser) blockGroup(b []byte, key bool) error {
	if len(b) >= 1 {
		// A Block's flags carry no key-frame bit; a BlockGroup without
		// ReferenceBlock is a key frame.
		return p.parseBlock(b, key)
	}
	return invalid("empty Block")
}

func (p *parser) block(b []byte) error {
	if len(b) < 4 {
		return invalid("SimpleBlock of %d bytes is too short", len(b))
	}
	n := 0
	for n < 8 && b[0]&(0x80>>n) == 0 {
		n++
	}
	if n == 8 || len(b) < n+4 {
		return invalid("SimpleBlock with a bad track number")
	}
	flags := b[n+3]
	return p.parseBlock(b, flags&0x80 != 0)
}

func (p *parser) parseBlock(b []byte, key bool) error {
	f := p.open
	if f.timecode < 0 {
		return invalid("block before the Cluster Timecode")
	}
	n := 0
	for n < 8 && b[0]&(0x80>>n) == 0 {
		n++
	}
	if n == 8 || len(b) < n+4 {
		return invalid("block with a bad track number")
	}
	tn := uint64(b[0] & (0xFF >> (n + 1)))
	for _, c := range b[1 : n+1] {
		tn = tn<<8 | uint64(c)
	}
	rel := int64(int16(binary.BigEndian.Uint16(b[n+1:])))
	flags := b[n+3]
	idx := -1
	for i, t := range p.tracks {
		if t.number == tn {
			idx = i
		}
	}
	if idx < 0 {
		return &StreamError{Code: ErrTrackNumberMismatch, Msg: fmt.Sprintf("block for track %d, which Tracks does not declare", tn), Timecode: f.timecode}
	}
	if rel < 0 {
		return &StreamError{Code: ErrFragmentTimecode, Msg: fmt.Sprintf("block timecode %d is before its Cluster's timecode", rel), Timecode: f.timecode}
	}
	if f.blockCount == 0 {
		f.keyFirst = key
		if !key {
			return invalid("fragment %d does not start with a key frame", f.timecode)
		}
	}
	f.blockCount++
	frames := 1
	if lacing := flags & 0x06; lacing != 0 {
		if len(b) < n+5 {
			return invalid("laced block without a frame count")
		}
		frames = int(b[n+4]) + 1
	}
	f.frames += frames
	f.perTrack[idx] += frames
	if key {
		f.keyFrames++
	}
	if rel > f.maxRel {
		f.maxRel = rel
	}
	if d := time.Duration(rel * p.scale); d > p.cfg.MaxFragmentDuration {
		return &StreamError{Code: ErrMaxFragmentDuration, Msg: fmt.Sprintf("fragment %d lasts at least %v, over the %v limit", f.timecode, d, p.cfg.MaxFragmentDuration), Timecode: f.timecode}
	}
	abs := f.start + rel*p.scale
	if abs > f.lastAbs {
		f.lastAbs = abs
	}
	return nil
}

// startFragment runs when a Cluster's Timecode is known.
func (p *parser) startFragment() error {
	f := p.open
	start := f.timecode * p.scale
	if p.cfg.Relative {
		start += int64(p.cfg.ProducerStart)
	}
	f.start, f.lastAbs = start, start
	if err := p.completeHeld(start); err != nil {
		return err
	}
	if p.havePrev && start <= p.prevLastAbs {
		return &StreamError{Code: ErrFragmentTimecode, Msg: fmt.Sprintf("fragment starts at %d, not after the previous fragment's last frame at %d (ns)", start, p.prevLastAbs), Timecode: f.timecode}
	}
	if p.cfg.MaxFuture >= 0 && p.cfg.Now != nil {
		if ahead := time.Duration(start - p.cfg.Now().UnixNano()); ahead > p.cfg.MaxFuture {
			return &StreamError{Code: ErrInvalidProducerTime, Msg: fmt.Sprintf("fragment timestamp is %v in the future", ahead.Round(time.Millisecond)), Timecode: f.timecode}
		}
	}
	return p.sink.fragmentStart(f)
}
