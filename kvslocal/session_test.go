package kvslocal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/kvslocal"
)

func mustOpen(t *testing.T, srv *kvslocal.Server, name string, o pmOpts) *pmConn {
	t.Helper()
	c, resp := openPutMedia(t, srv, name, o)
	if resp != nil {
		typ, msg := apiErrorOf(t, resp)
		t.Fatalf("PutMedia: %d %s %s", resp.StatusCode, typ, msg)
	}
	return c
}

func wantHTTPError(t *testing.T, resp *http.Response, status int, typ, msgPart string) {
	t.Helper()
	if resp == nil {
		t.Fatalf("want HTTP %d %s, got 200", status, typ)
	}
	gotTyp, msg := apiErrorOf(t, resp)
	if resp.StatusCode != status || gotTyp != typ || !strings.Contains(msg, msgPart) {
		t.Fatalf("got %d %s %q, want %d %s containing %q", resp.StatusCode, gotTyp, msg, status, typ, msgPart)
	}
}

// A fragment is RECEIVED only once the next cluster starts, or once an
// end-of-fragment tag arrives, never on its own.
func TestFragmentCompletion(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", time.Hour)
	m := liveMovie(t)
	m.unknownClusters = true
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	c.until(isEventAt("BUFFERING", m.clusters[0].tc))
	if err := c.send(m.chunk(1)); err != nil {
		t.Fatal(err)
	}
	seen := c.until(isEventAt("BUFFERING", m.clusters[1].tc))
	if got := describe(seen); len(got) != 3 || !strings.HasPrefix(got[0], "RECEIVED") || !strings.HasPrefix(got[1], "PERSISTED") {
		t.Fatalf("fragment 0 must complete when fragment 1 starts: %v", got)
	}
	// The end-of-fragment tag completes fragment 1 while the body stays open.
	if err := c.send(eofrTag()); err != nil {
		t.Fatal(err)
	}
	c.until(isEventAt("PERSISTED", m.clusters[1].tc))
	if f := srv.Fragments("s"); len(f) != 2 || f[1].Frames != len(m.clusters[1].blocks) {
		t.Fatalf("fragments %+v", f)
	}
	c.closeBody()
	if acks, err := c.all(); err != nil || len(acks) != 0 {
		t.Fatalf("after end of body: %v %v", describe(acks), err)
	}
}

func TestAckOpenFragmentAfterIdle(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{AckOpenFragmentAfter: 100 * time.Millisecond})
	newStream(t, srv, "s", time.Hour)
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	c.until(isEventAt("PERSISTED", m.clusters[0].tc))
	// The fragment is stored when it really completes, and not ACKed twice.
	if err := c.send(m.chunk(1)); err != nil {
		t.Fatal(err)
	}
	c.closeBody()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		if a.tc() == int64(m.clusters[0].tc) {
			t.Fatalf("fragment 0 acknowledged twice: %v", describe(acks))
		}
	}
	if n := len(srv.Fragments("s")); n != 2 {
		t.Fatalf("%d fragments", n)
	}
}

func TestIdleEventsThenClose(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{IdleTimeout: 600 * time.Millisecond, IdleAckInterval: 100 * time.Millisecond})
	newStream(t, srv, "s", 0)
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	acks, err := c.all() // the server ends the response by itself
	if err != nil {
		t.Fatalf("ACK stream: %v", err)
	}
	idle := 0
	for _, a := range acks {
		if a.EventType == "IDLE" {
			idle++
			if a.FragmentTimecode != nil || a.FragmentNumber != nil {
				t.Fatalf("IDLE carries no fragment: %+v", a)
			}
		}
	}
	if idle < 2 {
		t.Fatalf("want IDLE events before the idle close, got %v", describe(acks))
	}
	// The session ended, so the open fragment was complete and kept.
	if f := srv.Fragments("s"); len(f) != 1 {
		t.Fatalf("fragments %+v", f)
	}
	if err := c.send(m.chunk(1)); err == nil {
		// The write may still land in socket buffers; the server must at
		// least not be connected any more.
		if srv.Connected("s") {
			t.Fatal("still connected after the idle timeout")
		}
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{MaxConnectionDuration: 300 * time.Millisecond})
	newStream(t, srv, "s", 0)
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	last := acks[len(acks)-1]
	if last.EventType != "ERROR" || last.ErrorId != 4003 || last.ErrorCode != "MAX_CONNECTION_DURATION_REACHED" {
		t.Fatalf("want ERROR 4003 last, got %v", describe(acks))
	}
	if last.tc() != int64(m.clusters[0].tc) {
		t.Fatalf("4003 names the open fragment: %v", describe(acks))
	}
}

func TestConnectionLimitAndCallRate(t *testing.T) {
	now := time.Now()
	srv := kvslocal.Start(t, kvslocal.Options{Now: func() time.Time { return now }, MaxFutureTimestamp: -1})
	newStream(t, srv, "s", 0)
	m := liveMovie(t)
	first := mustOpen(t, srv, "s", pmOpts{signTime: now})
	if err := first.send(m.header()); err != nil {
		t.Fatal(err)
	}
	_, resp := openPutMedia(t, srv, "s", pmOpts{signTime: now})
	wantHTTPError(t, resp, 400, "ConnectionLimitExceededException", "only one")
	first.closeBody()
	if _, err := first.all(); err != nil {
		t.Fatal(err)
	}
	// The clock is frozen, so the per-second call budget never refills:
	// two calls were made; three more are allowed, the next is throttled.
	for i := 0; i < kvslocal.DefaultPutMediaCallsPerSec-2; i++ {
		if err := srv.WaitDisconnected(ctxT(t), "s"); err != nil {
			t.Fatal(err)
		}
		c := mustOpen(t, srv, "s", pmOpts{signTime: now})
		c.closeBody()
		if _, err := c.all(); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.WaitDisconnected(ctxT(t), "s"); err != nil {
		t.Fatal(err)
	}
	_, resp = openPutMedia(t, srv, "s", pmOpts{signTime: now})
	wantHTTPError(t, resp, 400, "ClientLimitExceededException", "PutMedia calls per second")
	if n := srv.Connections("s"); n != kvslocal.DefaultPutMediaCallsPerSec-1 {
		t.Fatalf("%d connections accepted", n)
	}
}

func TestPutMediaRequestChecks(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{Region: testRegion, PutMediaCallsPerSecond: -1})
	info, err := srv.CreateStream("s", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, resp := openPutMedia(t, srv, "nope", pmOpts{})
	wantHTTPError(t, resp, 404, "ResourceNotFoundException", "not found")
	_, resp = openPutMedia(t, srv, "s", pmOpts{timecodeType: "SOMETIMES"})
	wantHTTPError(t, resp, 400, "InvalidArgumentException", "ABSOLUTE or RELATIVE")
	_, resp = openPutMedia(t, srv, "s", pmOpts{start: "yesterday"})
	wantHTTPError(t, resp, 400, "InvalidArgumentException", "producer-start-timestamp")

	// By ARN works too.
	c := mustOpen(t, srv, "", pmOpts{streamARN: info.StreamARN})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}

	bad := aws.Credentials{AccessKeyID: srv.Credentials().AccessKeyID, SecretAccessKey: "nope"}
	_, resp = openPutMedia(t, srv, "s", pmOpts{cred: &bad})
	wantHTTPError(t, resp, 403, "InvalidSignatureException", "does not match")
	unknown := aws.Credentials{AccessKeyID: "AKIANOBODY0000000000", SecretAccessKey: "x"}
	_, resp = openPutMedia(t, srv, "s", pmOpts{cred: &unknown})
	wantHTTPError(t, resp, 403, "UnrecognizedClientException", "invalid")

	_, resp = openPutMedia(t, srv, "s", pmOpts{signTime: time.Now().Add(-6 * time.Minute)})
	wantHTTPError(t, resp, 403, "InvalidSignatureException", "Signature expired")
	_, resp = openPutMedia(t, srv, "s", pmOpts{signTime: time.Now().Add(6 * time.Minute)})
	wantHTTPError(t, resp, 403, "InvalidSignatureException", "Signature not yet current")
	c = mustOpen(t, srv, "s", pmOpts{signTime: time.Now().Add(-4 * time.Minute)})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}

	// Payload hash variants.
	_, resp = openPutMedia(t, srv, "s", pmOpts{contentHash: "UNSIGNED-PAYLOAD"})
	wantHTTPError(t, resp, 403, "InvalidSignatureException", "UNSIGNED-PAYLOAD")
	c = mustOpen(t, srv, "s", pmOpts{contentHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}

	issued := srv.IssueCredentials(time.Hour)
	c = mustOpen(t, srv, "s", pmOpts{cred: &issued})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}
	srv.ExpireCredentials()
	_, resp = openPutMedia(t, srv, "s", pmOpts{cred: &issued})
	wantHTTPError(t, resp, 403, "ExpiredTokenException", kvslocal.MsgTokenExpired)
}

func TestInjectedErrorAtFragment(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", time.Hour)
	if err := srv.FailFragment("s", 5000, 1); err != nil {
		t.Fatal(err)
	}
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	go func() { _ = c.send(m.bytes()); c.closeBody() }()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	last := acks[len(acks)-1]
	if last.EventType != "ERROR" || last.ErrorId != 5000 || last.ErrorCode != "INTERNAL_ERROR" || last.tc() != int64(m.clusters[1].tc) ||
		last.FragmentNumber == nil || *last.FragmentNumber == "" {
		t.Fatalf("want ERROR 5000 for fragment 1, got %v", describe(acks))
	}
	if f := srv.Fragments("s"); len(f) != 1 {
		t.Fatalf("%d fragments kept", len(f))
	}
	// The fault is used up: the next connection goes through.
	c = mustOpen(t, srv, "s", pmOpts{})
	go func() { _ = c.send(m.shift(10_000).bytes()); c.closeBody() }()
	if acks, err := c.all(); err != nil || acks[len(acks)-1].EventType != "PERSISTED" {
		t.Fatalf("second connection: %v %v", describe(acks), err)
	}
}

func TestDroppedConnection(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", time.Hour)
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	c.until(isEventAt("BUFFERING", m.clusters[0].tc))
	if err := srv.DropConnection("s", 1000); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := 1; i < len(m.clusters); i++ {
			if c.send(m.chunk(i)) != nil {
				return
			}
		}
	}()
	var err error
	for {
		a, ok := c.next()
		if !ok {
			err = <-c.done
			break
		}
		if a.EventType == "ERROR" {
			t.Fatalf("a dropped connection sends no ERROR: %+v", a)
		}
	}
	if err == nil {
		t.Fatal("want a broken response body, got a clean end")
	}
	if f := srv.Fragments("s"); len(f) != 1 {
		t.Fatalf("only fragment 0 completed, got %d", len(f))
	}
}

func TestStalledAcks(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{AckFraming: kvslocal.FramingNewline})
	newStream(t, srv, "s", time.Hour)
	release, err := srv.StallAcks("s")
	if err != nil {
		t.Fatal(err)
	}
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(m.bytes()); err != nil {
		t.Fatal(err)
	}
	c.closeBody() // completes the last fragment
	if _, err := srv.WaitFragments(ctxT(t), "s", len(m.clusters)); err != nil {
		t.Fatal(err)
	}
	// Fragments are recorded before their ACKs are queued; with the stall
	// on, none can have been written.
	if a := srv.Acks("s"); len(a) != 0 || len(c.rawBytes()) != 0 {
		t.Fatalf("ACKs leaked through the stall: %v %q", a, c.rawBytes())
	}
	release()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 3*len(m.clusters) || acks[0].EventType != "BUFFERING" {
		t.Fatalf("after release: %v", describe(acks))
	}
}

func TestThrottledPutMedia(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", 0)
	if err := srv.Throttle("s", 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, resp := openPutMedia(t, srv, "s", pmOpts{})
		wantHTTPError(t, resp, 400, "ClientLimitExceededException", "throttled")
	}
	c := mustOpen(t, srv, "s", pmOpts{})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}
}

func TestSlowReader(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", 0)
	const rate = 200_000
	if err := srv.SlowReader("s", rate); err != nil {
		t.Fatal(err)
	}
	m := liveMovie(t)
	body := m.bytes()
	start := time.Now()
	c := mustOpen(t, srv, "s", pmOpts{})
	go func() { _ = c.send(body); c.closeBody() }()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: the body cannot have been read faster than the
	// limit allows (less the first 50 ms slice).
	if min := time.Duration(float64(len(body))/rate*float64(time.Second)) - 100*time.Millisecond; time.Since(start) < min {
		t.Fatalf("%d bytes read in %v, faster than %d B/s", len(body), time.Since(start), rate)
	}
}

func TestDeleteStreamUnderConnection(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", time.Hour)
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	c.until(isEvent("BUFFERING"))
	if err := srv.DeleteStream("s"); err != nil {
		t.Fatal(err)
	}
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	if last := acks[len(acks)-1]; last.EventType != "ERROR" || last.ErrorId != 4008 {
		t.Fatalf("want ERROR 4008, got %v", describe(acks))
	}
	_, resp := openPutMedia(t, srv, "s", pmOpts{})
	wantHTTPError(t, resp, 404, "ResourceNotFoundException", "")
}

func TestDownRefusedDropsConnections(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", 0)
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	c.until(isEvent("BUFFERING"))
	srv.Down(kvslocal.Refused, 0)
	if _, err := c.all(); err == nil {
		t.Fatal("want the open connection broken")
	}
	srv.Up()
	// The server notices the broken connection on its own time.
	if err := srv.WaitDisconnected(ctxT(t), "s"); err != nil {
		t.Fatal(err)
	}
	c = mustOpen(t, srv, "s", pmOpts{})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}
}

// Every framing must decode as a JSON stream; the concatenated one must
// really leave out separators.
func TestAckFramings(t *testing.T) {
	for _, fr := range []kvslocal.Framing{kvslocal.FramingMixed, kvslocal.FramingNewline, kvslocal.FramingConcatenated, kvslocal.FramingSplit} {
		srv := kvslocal.Start(t, kvslocal.Options{AckFraming: fr})
		newStream(t, srv, "s", time.Hour)
		m := liveMovie(t)
		c := mustOpen(t, srv, "s", pmOpts{})
		go func() { _ = c.send(m.bytes()); c.closeBody() }()
		acks, err := c.all()
		if err != nil || len(acks) != 3*len(m.clusters) {
			t.Fatalf("framing %d: %v %v", fr, describe(acks), err)
		}
		raw := c.rawBytes()
		dec := json.NewDecoder(bytes.NewReader(raw))
		n := 0
		for {
			var v map[string]any
			if err := dec.Decode(&v); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if _, ok := v["FragmentNumber"].(string); !ok {
				t.Fatalf("FragmentNumber must be a JSON string: %v", v)
			}
			n++
		}
		switch fr {
		case kvslocal.FramingConcatenated:
			if bytes.Contains(raw, []byte("\n")) || !bytes.Contains(raw, []byte("}{")) {
				t.Fatalf("concatenated framing: %q", raw[:80])
			}
		case kvslocal.FramingNewline:
			if bytes.Count(raw, []byte("\n")) != n {
				t.Fatalf("newline framing: %d lines for %d objects", bytes.Count(raw, []byte("\n")), n)
			}
		}
	}
}

var _ = context.Background

// Fragments beyond the per-second quota are not refused; the server reads
// them more slowly, as the service throttles ingestion.
// Fragments over the per-second quota are refused, not queued: with a
// bucket of rate fragments, the first rate of a burst pass and the next
// one gets ERROR 4000, which ends the connection.
func TestFragmentRateRefuses(t *testing.T) {
	const rate = 4
	srv := kvslocal.Start(t, kvslocal.Options{MaxFragmentsPerSecond: rate})
	newStream(t, srv, "s", 0)
	base := liveMovie(t)
	m := base.clone()
	for k := 1; k < 4; k++ { // 12 fragments
		m.clusters = append(m.clusters, base.shift(uint64(k*3000)).clusters...)
	}
	c := mustOpen(t, srv, "s", pmOpts{})
	go func() { _ = c.send(m.bytes()); c.closeBody() }()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	last := acks[len(acks)-1]
	if last.EventType != "ERROR" || last.ErrorId != 4000 || last.tc() != int64(m.clusters[rate].tc) {
		t.Fatalf("want ERROR 4000 for fragment %d, got %v", rate, describe(acks))
	}
	if n := len(srv.Fragments("s")); n != rate {
		t.Fatalf("%d fragments received, want %d: %v", n, rate, describe(acks))
	}
}

func TestBandwidthThrottles(t *testing.T) {
	const rate = 100_000
	srv := kvslocal.Start(t, kvslocal.Options{MaxBytesPerSecond: rate})
	newStream(t, srv, "s", 0)
	m := liveMovie(t)
	body := m.bytes()
	start := time.Now()
	c := mustOpen(t, srv, "s", pmOpts{})
	go func() { _ = c.send(body); c.closeBody() }()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}
	if min := time.Duration(float64(len(body)-rate) / rate * float64(time.Second)); time.Since(start) < min {
		t.Fatalf("%d bytes in %v, faster than %d B/s", len(body), time.Since(start), rate)
	}
}

// With a separate data endpoint, PutMedia only works where GetDataEndpoint
// points, as on the service.
func TestSeparateDataEndpoint(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{SeparateDataEndpoint: true})
	newStream(t, srv, "s", 0)
	if srv.DataURL == srv.URL || srv.DataURL == "" {
		t.Fatalf("DataURL %q URL %q", srv.DataURL, srv.URL)
	}
	_, resp := openPutMedia(t, srv, "s", pmOpts{})
	wantHTTPError(t, resp, 400, "InvalidEndpointException", "GetDataEndpoint")
	c := mustOpen(t, srv, "s", pmOpts{url: srv.DataURL})
	go func() { _ = c.send(liveMovie(t).bytes()); c.closeBody() }()
	if _, err := c.all(); err != nil || len(srv.Fragments("s")) != 3 {
		t.Fatalf("on the data endpoint: %v, %d fragments", err, len(srv.Fragments("s")))
	}
}

// After an ERROR the stream takes a new connection at once, even while the
// old request is still open on the producer's side.
func TestReconnectRightAfterError(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "s", 0)
	if err := srv.FailFragment("s", 4000, 0); err != nil {
		t.Fatal(err)
	}
	m := liveMovie(t)
	c := mustOpen(t, srv, "s", pmOpts{})
	if err := c.send(append(m.header(), m.chunk(0)...)); err != nil {
		t.Fatal(err)
	}
	if err := c.send(m.chunk(1)); err != nil { // completes fragment 0: ERROR
		t.Fatal(err)
	}
	c.until(isEvent("ERROR"))
	if err := srv.WaitDisconnected(ctxT(t), "s"); err != nil {
		t.Fatal(err)
	}
	c2 := mustOpen(t, srv, "s", pmOpts{})
	go func() { _ = c2.send(m.bytes()); c2.closeBody() }()
	if acks, err := c2.all(); err != nil || acks[len(acks)-1].EventType != "RECEIVED" {
		t.Fatalf("second connection: %v %v", describe(acks), err)
	}
	c.closeBody()
}
