package kvslocal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// ---- a tiny Matroska writer, independent of the server's parser ----

const (
	eEBML         = 0x1A45DFA3
	eDocType      = 0x4282
	eEBMLVersion  = 0x4286
	eReadVersion  = 0x42F7
	eSegment      = 0x18538067
	eInfo         = 0x1549A966
	eScale        = 0x2AD7B1
	eTracks       = 0x1654AE6B
	eTrackEntry   = 0xAE
	eTrackNumber  = 0xD7
	eTrackUID     = 0x73C5
	eTrackType    = 0x83
	eCodecID      = 0x86
	eCodecPrivate = 0x63A2
	eCluster      = 0x1F43B675
	eTimecode     = 0xE7
	eSimpleBlock  = 0xA3
	eTags         = 0x1254C367
	eTag          = 0x7373
	eSimpleTag    = 0x67C8
	eTagName      = 0x45A3
	eTagString    = 0x4487
)

func idBytes(id uint32) []byte {
	switch {
	case id > 0xFFFFFF:
		return []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	case id > 0xFFFF:
		return []byte{byte(id >> 16), byte(id >> 8), byte(id)}
	case id > 0xFF:
		return []byte{byte(id >> 8), byte(id)}
	}
	return []byte{byte(id)}
}

func el(id uint32, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(len(body)))
	sz[0] = 0x01
	return append(append(idBytes(id), sz[:]...), body...)
}

func elUnknown(id uint32) []byte {
	return append(idBytes(id), 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
}

func uintEl(id uint32, v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return el(id, b[:])
}

func strEl(id uint32, s string) []byte { return el(id, []byte(s)) }

type mblock struct {
	track uint64
	rel   int16
	key   bool
	data  []byte
}

type mcluster struct {
	tc     uint64
	blocks []mblock
	// tagsBefore is written as a Tags element before the cluster.
	tagsBefore map[string]string
}

type mtrack struct {
	num, typ uint64
	codec    string
	private  []byte
}

// movie is a Matroska stream a test can bend out of shape.
type movie struct {
	docType         string
	scale           uint64
	tracks          []mtrack
	clusters        []mcluster
	unknownClusters bool
}

func (m movie) clone() movie {
	c := m
	c.tracks = append([]mtrack(nil), m.tracks...)
	c.clusters = make([]mcluster, len(m.clusters))
	for i, cl := range m.clusters {
		cl.blocks = append([]mblock(nil), cl.blocks...)
		c.clusters[i] = cl
	}
	return c
}

func (m movie) header() []byte {
	var tracks [][]byte
	for _, t := range m.tracks {
		parts := [][]byte{uintEl(eTrackNumber, t.num), uintEl(eTrackUID, t.num), uintEl(eTrackType, t.typ), strEl(eCodecID, t.codec)}
		if t.private != nil {
			parts = append(parts, el(eCodecPrivate, t.private))
		}
		tracks = append(tracks, el(eTrackEntry, parts...))
	}
	return bytes.Join([][]byte{
		el(eEBML, uintEl(eEBMLVersion, 1), uintEl(eReadVersion, 1), strEl(eDocType, m.docType)),
		elUnknown(eSegment),
		el(eInfo, uintEl(eScale, m.scale)),
		el(eTracks, tracks...),
	}, nil)
}

func tagsEl(tags map[string]string) []byte {
	var simple [][]byte
	for k, v := range tags {
		simple = append(simple, el(eSimpleTag, strEl(eTagName, k), strEl(eTagString, v)))
	}
	return el(eTags, el(eTag, simple...))
}

func eofrTag() []byte { return tagsEl(map[string]string{"AWS_KINESISVIDEO_END_OF_FRAGMENT": ""}) }

// clusterBytes is cluster i exactly as the server should hash it.
func (m movie) clusterBytes(i int) []byte {
	cl := m.clusters[i]
	parts := [][]byte{uintEl(eTimecode, cl.tc)}
	for _, b := range cl.blocks {
		hdr := []byte{0x80 | byte(b.track), byte(uint16(b.rel) >> 8), byte(uint16(b.rel))}
		flags := byte(0)
		if b.key {
			flags = 0x80
		}
		parts = append(parts, el(eSimpleBlock, hdr, []byte{flags}, b.data))
	}
	if m.unknownClusters {
		return append(elUnknown(eCluster), bytes.Join(parts, nil)...)
	}
	return el(eCluster, parts...)
}

// chunk is what is sent before cluster i (its tags) plus the cluster.
func (m movie) chunk(i int) []byte {
	var b []byte
	if t := m.clusters[i].tagsBefore; t != nil {
		b = tagsEl(t)
	}
	return append(b, m.clusterBytes(i)...)
}

func (m movie) bytes() []byte {
	b := m.header()
	for i := range m.clusters {
		b = append(b, m.chunk(i)...)
	}
	return b
}

func (m movie) frames() int {
	n := 0
	for _, c := range m.clusters {
		n += len(c.blocks)
	}
	return n
}

// shift moves every cluster timecode by d (in TimecodeScale units).
func (m movie) shift(d uint64) movie {
	c := m.clone()
	for i := range c.clusters {
		c.clusters[i].tc += d
	}
	return c
}

// ---- ffmpeg input ----

var (
	ffOnce  sync.Once
	ffMovie movie
	ffErr   error
	ffRaw   []byte
	tmpRoot string
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "kvslocal-test-")
	if err != nil {
		panic(err)
	}
	tmpRoot = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// ffmpegMovie encodes 3 s of 320x240 30 fps H.264 (GOP 30, no B-frames)
// into live Matroska with ffmpeg and reads it back with ebml-go.
func ffmpegMovie(tb testing.TB) (movie, []byte) {
	tb.Helper()
	ffOnce.Do(func() {
		ff, err := exec.LookPath("ffmpeg")
		if err != nil {
			ffErr = fmt.Errorf("ffmpeg is needed to make test input: apt-get install ffmpeg")
			return
		}
		out := filepath.Join(tmpRoot, "ff.mkv")
		cmd := exec.Command(ff, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "3",
			"-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p",
			"-f", "matroska", "-live", "1", "-cluster_time_limit", "1000", "-cluster_size_limit", "10000000", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			ffErr = fmt.Errorf("ffmpeg: %v: %s", err, b)
			return
		}
		ffRaw, ffErr = os.ReadFile(out)
		if ffErr != nil {
			return
		}
		var f struct {
			Header  webm.EBMLHeader `ebml:"EBML"`
			Segment struct {
				Info struct {
					TimecodeScale uint64 `ebml:"TimecodeScale"`
				} `ebml:"Info"`
				Tracks  webm.Tracks    `ebml:"Tracks"`
				Cluster []webm.Cluster `ebml:"Cluster"`
			} `ebml:"Segment"`
		}
		if ffErr = ebml.Unmarshal(bytes.NewReader(ffRaw), &f); ffErr != nil && !errors.Is(ffErr, io.ErrUnexpectedEOF) {
			ffErr = fmt.Errorf("ebml-go: %w", ffErr)
			return
		}
		ffErr = nil
		m := movie{docType: f.Header.DocType, scale: f.Segment.Info.TimecodeScale}
		for _, t := range f.Segment.Tracks.TrackEntry {
			m.tracks = append(m.tracks, mtrack{num: t.TrackNumber, typ: t.TrackType, codec: t.CodecID, private: t.CodecPrivate})
		}
		for _, c := range f.Segment.Cluster {
			if len(c.BlockGroup) > 0 {
				ffErr = fmt.Errorf("ffmpeg wrote BlockGroups; the test expects SimpleBlocks only")
				return
			}
			mc := mcluster{tc: c.Timecode}
			for _, b := range c.SimpleBlock {
				mc.blocks = append(mc.blocks, mblock{track: b.TrackNumber, rel: b.Timecode, key: b.Keyframe, data: bytes.Join(b.Data, nil)})
			}
			m.clusters = append(m.clusters, mc)
		}
		ffMovie = m
	})
	if ffErr != nil {
		tb.Fatal(ffErr)
	}
	return ffMovie.clone(), ffRaw
}

// liveMovie is the ffmpeg movie moved to ABSOLUTE timecodes ending about
// now, so the future-timestamp rule is not hit.
func liveMovie(tb testing.TB) movie {
	m, _ := ffmpegMovie(tb)
	start := uint64(time.Now().Add(-time.Minute).UnixMilli())
	return m.shift(start)
}

// ---- a PutMedia client for tests ----

type ackMsg struct {
	EventType        string
	FragmentTimecode *int64
	FragmentNumber   *string
	ErrorId          int
	ErrorCode        string
}

func (a ackMsg) tc() int64 {
	if a.FragmentTimecode == nil {
		return -999
	}
	return *a.FragmentTimecode
}

type pmOpts struct {
	cred         *aws.Credentials
	timecodeType string
	start        string
	signTime     time.Time
	contentHash  string // x-amz-content-sha256 header and payload hash
	streamARN    string
	client       *http.Client
	url          string // default srv.URL
}

type pmConn struct {
	tb     testing.TB
	pw     *io.PipeWriter
	resp   *http.Response
	events chan ackMsg
	done   chan error
	raw    *bytes.Buffer
	rawMu  sync.Mutex
}

// openPutMedia starts a PutMedia request whose body the test writes with
// send. A non-200 answer is returned as resp with conn nil.
func openPutMedia(tb testing.TB, srv *kvslocal.Server, streamName string, o pmOpts) (*pmConn, *http.Response) {
	tb.Helper()
	pr, pw := io.Pipe()
	base := srv.URL
	if o.url != "" {
		base = o.url
	}
	req, err := http.NewRequest(http.MethodPost, base+"/putMedia", pr)
	if err != nil {
		tb.Fatal(err)
	}
	req.ContentLength = -1
	if o.streamARN != "" {
		req.Header.Set("x-amzn-stream-arn", o.streamARN)
	} else {
		req.Header.Set("x-amzn-stream-name", streamName)
	}
	if o.timecodeType == "" {
		o.timecodeType = "ABSOLUTE"
	}
	if o.start == "" {
		o.start = strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64)
	}
	req.Header.Set("x-amzn-fragment-timecode-type", o.timecodeType)
	req.Header.Set("x-amzn-producer-start-timestamp", o.start)
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "keep-alive")
	cred := srv.Credentials()
	if o.cred != nil {
		cred = *o.cred
	}
	if o.signTime.IsZero() {
		o.signTime = time.Now()
	}
	hash := kvslocal.EmptyPayloadHash
	if o.contentHash != "" {
		hash = o.contentHash
		req.Header.Set("X-Amz-Content-Sha256", o.contentHash)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), cred, req, hash, "kinesisvideo", testRegion, o.signTime); err != nil {
		tb.Fatal(err)
	}
	client := http.DefaultClient
	if o.client != nil {
		client = o.client
	}
	resp, err := client.Do(req)
	if err != nil {
		pw.Close()
		tb.Fatalf("PutMedia: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		pw.Close()
		tb.Cleanup(func() { resp.Body.Close() })
		return nil, resp
	}
	c := &pmConn{tb: tb, pw: pw, resp: resp, events: make(chan ackMsg, 1000), done: make(chan error, 1), raw: &bytes.Buffer{}}
	go func() {
		dec := json.NewDecoder(io.TeeReader(resp.Body, (*lockedWriter)(c)))
		for {
			var a ackMsg
			if err := dec.Decode(&a); err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				c.done <- err
				close(c.events)
				return
			}
			c.events <- a
		}
	}()
	tb.Cleanup(func() { pw.Close(); resp.Body.Close() })
	return c, nil
}

type lockedWriter pmConn

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.rawMu.Lock()
	defer w.rawMu.Unlock()
	return w.raw.Write(p)
}

func (c *pmConn) rawBytes() []byte {
	c.rawMu.Lock()
	defer c.rawMu.Unlock()
	return append([]byte(nil), c.raw.Bytes()...)
}

func (c *pmConn) send(b []byte) error {
	_, err := c.pw.Write(b)
	return err
}

func (c *pmConn) closeBody() { c.pw.Close() }

// next returns the next ACK; ok is false once the response has ended.
func (c *pmConn) next() (ackMsg, bool) {
	c.tb.Helper()
	select {
	case a, ok := <-c.events:
		return a, ok
	case <-time.After(20 * time.Second):
		c.tb.Fatal("no ACK within 20 s")
	}
	return ackMsg{}, false
}

// until reads ACKs up to and including one matching pred.
func (c *pmConn) until(pred func(ackMsg) bool) []ackMsg {
	c.tb.Helper()
	var seen []ackMsg
	for {
		a, ok := c.next()
		if !ok {
			c.tb.Fatalf("response ended before the expected ACK; saw %+v", describe(seen))
		}
		seen = append(seen, a)
		if pred(a) {
			return seen
		}
	}
}

// all reads ACKs until the response ends and returns them with the decode
// error (nil at a clean end).
func (c *pmConn) all() ([]ackMsg, error) {
	c.tb.Helper()
	var seen []ackMsg
	for {
		a, ok := c.next()
		if !ok {
			return seen, <-c.done
		}
		seen = append(seen, a)
	}
}

func describe(acks []ackMsg) []string {
	var s []string
	for _, a := range acks {
		d := fmt.Sprintf("%s@%d", a.EventType, a.tc())
		if a.ErrorId != 0 {
			d += fmt.Sprintf("(%d %s)", a.ErrorId, a.ErrorCode)
		}
		s = append(s, d)
	}
	return s
}

func isEvent(ev string) func(ackMsg) bool { return func(a ackMsg) bool { return a.EventType == ev } }

func isEventAt(ev string, tc uint64) func(ackMsg) bool {
	return func(a ackMsg) bool { return a.EventType == ev && a.tc() == int64(tc) }
}

func apiErrorOf(tb testing.TB, resp *http.Response) (typ, msg string) {
	tb.Helper()
	var body struct{ Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.Fatalf("error body: %v", err)
	}
	typ = resp.Header.Get("x-amzn-ErrorType")
	if i := bytes.IndexByte([]byte(typ), ':'); i >= 0 {
		typ = typ[:i]
	}
	return typ, body.Message
}

// newAckDecoder decodes ACKs from a response body until it ends.
func newAckDecoder(resp *http.Response) func() (ackMsg, bool) {
	dec := json.NewDecoder(resp.Body)
	return func() (ackMsg, bool) {
		var a ackMsg
		if err := dec.Decode(&a); err != nil {
			return a, false
		}
		return a, true
	}
}
