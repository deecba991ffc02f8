package sender

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// testStart dates test video a little in the past, as captured video is.
func testStart() time.Time { return time.Now().Add(-10 * time.Minute).Truncate(time.Second) }

func TestUploadLive(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	if len(frags) < 8 {
		t.Fatalf("only %d fragments from the clip", len(frags))
	}
	h.append(frags[:3]...)
	h.start()
	h.waitAllAcked()
	// Live: fragments appended while the connection is open follow.
	for _, f := range frags[3:] {
		h.append(f)
	}
	h.waitAllAcked()
	got := h.check(nil)
	if len(got) != len(frags) {
		t.Errorf("endpoint stored %d fragments, want exactly %d (no duplicates on a clean run)", len(got), len(frags))
	}
	st := h.s.Stats()
	if st.Acked != uint64(len(frags)) || st.Skipped != 0 || st.Sent != uint64(len(frags)) || st.Connections != 1 {
		t.Errorf("stats %+v: want %d sent and acked on one connection", st, len(frags))
	}
	if !st.OldestUnacked.IsZero() {
		t.Errorf("oldest unacked %v with everything acknowledged", st.OldestUnacked)
	}
}

// Error codes after which the same fragment must be sent again.
func TestRetryCodes(t *testing.T) {
	t.Parallel()
	for _, code := range []int{4000, 4003, 5000, 5001, 4999} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, quickCheck())
			frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
			h.append(frags...)
			if err := h.kvs.FailFragment(testStream, code, 2); err != nil {
				t.Fatal(err)
			}
			h.start()
			h.waitAllAcked()
			h.check(nil)
			st := h.s.Stats()
			if st.Skipped != 0 || st.Connections < 2 || !strings.Contains(st.LastError, fmt.Sprint(code)) {
				t.Errorf("stats %+v: want a reconnect for error %d and nothing skipped", st, code)
			}
		})
	}
}

// Error codes after which the fragment is given up and never resent.
func TestSkipCodes(t *testing.T) {
	t.Parallel()
	for _, code := range []int{4001, 4002, 4005, 4006, 4009, 4010, 4011, 4012} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, quickCheck())
			frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
			h.append(frags...)
			if err := h.kvs.FailFragment(testStream, code, 1); err != nil {
				t.Fatal(err)
			}
			h.start()
			h.waitAllAcked()
			h.check(map[int64]bool{frags[1].Timecode: true})
			h.mu.Lock()
			n := h.sentCount[h.ids[frags[1].Timecode]]
			h.mu.Unlock()
			if n != 1 {
				t.Errorf("refused fragment sent %d times, want once", n)
			}
			if st := h.s.Stats(); st.Skipped != 1 || st.Acked != uint64(len(frags)-1) {
				t.Errorf("stats %+v: want 1 skipped, %d acked", st, len(frags)-1)
			}
		})
	}
}

// Error codes that need a person: data is kept and reported, and sent
// once the problem is gone.
func TestOperatorCodes(t *testing.T) {
	t.Parallel()
	for _, code := range []int{4008, 4500, 4503, 4507} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.OperatorBackoff = time.Second }))
			frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
			h.append(frags...)
			if err := h.kvs.FailFragment(testStream, code, 1); err != nil {
				t.Fatal(err)
			}
			h.start()
			h.waitFor("operator alert", func() bool { return strings.Contains(h.s.Stats().Alert, fmt.Sprint(code)) })
			st := h.s.Stats()
			if !strings.HasPrefix(st.State, "operator action needed") {
				t.Errorf("state %q during operator back-off", st.State)
			}
			if id, ok := h.ring.FirstUnacked(); !ok || id != h.ids[frags[1].Timecode] {
				t.Errorf("first unacked %d %v, want the failed fragment %d kept", id, ok, h.ids[frags[1].Timecode])
			}
			h.waitAllAcked()
			h.check(nil)
			if st := h.s.Stats(); st.Skipped != 0 || st.Alert != "" {
				t.Errorf("stats %+v: want nothing skipped and the alert cleared after recovery", st)
			}
		})
	}
}

func TestConnectionDroppedMidFragment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags...)
	// Drop the second fragment after 5000 of its bytes and, on the next
	// connection, the first one after 100 bytes.
	for _, n := range []int64{-1, 5000, 100} {
		if n >= 0 {
			if err := h.kvs.DropConnection(testStream, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.start()
	h.waitAllAcked()
	h.check(nil)
	if st := h.s.Stats(); st.Connections < 3 {
		t.Errorf("stats %+v: want at least 3 connections after 2 drops", st)
	}
}

func TestAckStall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.AckTimeout = 500 * time.Millisecond }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	release, err := h.kvs.StallAcks(testStream)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	h.append(frags...)
	h.start()
	h.waitFor("a reconnect after the acknowledgements stalled", func() bool {
		st := h.s.Stats()
		return st.Connections >= 2 && strings.Contains(st.LastError, "not RECEIVED")
	})
	if _, ok := h.ring.FirstUnacked(); !ok {
		t.Fatal("fragments acknowledged while the endpoint sent no acknowledgements")
	}
	release()
	h.waitAllAcked()
	h.check(nil)
}

// The endpoint is down for a while: the sender backs off, then (upload
// order in-order) drains the backlog in order and follows live data.
func TestOutageBacklogThenLive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.UploadOrder = OrderInOrder }))
	frags := clipFragments(t, "baseline-repeat.h264", 4, testStart())
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()
	h.kvs.Down(kvslocal.Refused, 0)
	backlog := frags[2:15]
	h.append(backlog...)
	h.waitFor("reconnect attempts against the down endpoint", func() bool {
		st := h.s.Stats()
		return strings.HasPrefix(st.State, "backing off") && st.OldestUnackedAge > 0
	})
	h.kvs.Up()
	h.waitAllAcked()
	h.append(frags[15:]...)
	h.waitAllAcked()
	got := h.check(nil)
	// The backlog must arrive in timecode order.
	var last int64
	for _, f := range got {
		if f.Timecode < last {
			t.Errorf("fragment %d arrived after %d", f.Timecode, last)
		}
		last = f.Timecode
	}
}

// Unavailable (503) is a different way of being down.
func TestServiceUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.kvs.Down(kvslocal.Unavailable, 0)
	h.append(frags...)
	h.start()
	h.waitFor("back-off on 503", func() bool { return h.s.Stats().LastError != "" })
	h.kvs.Up()
	h.waitAllAcked()
	h.check(nil)
}

func TestThrottled(t *testing.T) {
	t.Parallel()
	t.Run("control plane", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, quickCheck())
		frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
		h.append(frags...)
		if err := h.kvs.Throttle(testStream, 4); err != nil {
			t.Fatal(err)
		}
		h.start()
		h.waitAllAcked()
		h.check(nil)
		if st := h.s.Stats(); !strings.Contains(st.LastError, "DescribeStream") || !strings.Contains(st.LastError, "throttled") {
			t.Errorf("last error %q: want the throttled DescribeStream reported", st.LastError)
		}
	})
	t.Run("PutMedia", func(t *testing.T) {
		t.Parallel()
		// Rotation makes the sender open new PutMedia requests without
		// touching the control plane, so the throttles hit PutMedia.
		h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.RotateAfter = 200 * time.Millisecond }))
		frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
		h.append(frags[:2]...)
		h.start()
		h.waitAllAcked()
		if err := h.kvs.Throttle(testStream, 3); err != nil {
			t.Fatal(err)
		}
		h.append(frags[2:]...)
		h.waitAllAcked()
		h.check(nil)
		if st := h.s.Stats(); !strings.Contains(st.LastError, "PutMedia: HTTP 400 ClientLimitExceededException") {
			t.Errorf("last error %q: want the throttled PutMedia reported", st.LastError)
		}
	})
}

// A slow link is not mistaken for a dead one.
func TestSlowLink(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.AckTimeout = 3 * time.Second }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	if err := h.kvs.SlowReader(testStream, 60_000); err != nil {
		t.Fatal(err)
	}
	h.append(frags...)
	h.start()
	h.waitAllAcked()
	h.check(nil)
	if st := h.s.Stats(); st.Connections != 1 {
		t.Errorf("stats %+v: a slow link caused reconnects", st)
	}
}

// The upload rate limit paces the body.
func TestRateLimit(t *testing.T) {
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	total := 0
	for _, f := range frags {
		total += len(f.Cluster)
	}
	limit := int64(total / 2) // about two seconds of sending
	h := newHarness(t, withConfig(func(c *Config) { c.RateLimit = limit }))
	h.append(frags...)
	began := time.Now()
	h.start()
	h.waitAllAcked()
	took := time.Since(began)
	// The bucket starts full: a tenth of a second's worth or one chunk.
	burst := max(limit/10, chunkSize)
	if min := time.Duration(float64(int64(total)-burst) / float64(limit) * float64(time.Second)); took < min {
		t.Errorf("%d bytes at %d B/s took %v, want at least %v", total, limit, took, min)
	}
	h.check(nil)
}

// Credentials that expire: the endpoint answers 403 and the sender fetches
// new ones and reconnects at once.
func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	var kvs *kvslocal.Server
	prov := &countingProvider{}
	prov.next = func() aws.Credentials {
		c := kvs.IssueCredentials(time.Hour)
		return c
	}
	h := newHarness(t, withConfig(func(c *Config) { c.Credentials = prov }))
	kvs = h.kvs
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags[:3]...)
	h.start()
	h.waitAllAcked()
	// The open connection goes on with its old signature; the next one
	// (forced by a drop) is refused until new credentials are fetched.
	kvs.ExpireCredentials()
	if err := kvs.DropConnection(testStream, 10); err != nil {
		t.Fatal(err)
	}
	h.append(frags[3:]...)
	h.waitAllAcked()
	h.check(nil)
	st := h.s.Stats()
	if prov.count() < 2 || !strings.Contains(st.LastError, "expired") {
		t.Errorf("provider called %d times, last error %q: want a refresh after expiry", prov.count(), st.LastError)
	}
}

// Connections are rotated at fragment boundaries, draining the
// acknowledgements of the old one first, so nothing is sent twice.
func TestRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.RotateAfter = 300 * time.Millisecond }),
		withKVS(func(o *kvslocal.Options) { o.PersistDelay = 50 * time.Millisecond }))
	frags := clipFragments(t, "baseline-repeat.h264", 3, testStart())
	h.start()
	for _, f := range frags {
		h.append(f)
		time.Sleep(100 * time.Millisecond) // pacing like a camera, not synchronisation
	}
	h.waitAllAcked()
	got := h.check(nil)
	if len(got) != len(frags) {
		t.Errorf("endpoint stored %d fragments, want %d: rotation resent some", len(got), len(frags))
	}
	if st := h.s.Stats(); st.Connections < 3 {
		t.Errorf("stats %+v: want several rotated connections", st)
	}
}

// With no data the sender closes the connection itself before the
// service's idle timeout, and opens a new one when data comes.
func TestIdleClose(t *testing.T) {
	t.Parallel()
	// Long enough that appending the second batch (three fsyncs on a
	// loaded machine) never takes an idle period: a third connection would
	// then be opened for the last fragments.
	h := newHarness(t, withConfig(func(c *Config) { c.IdleClose = time.Second }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()
	h.waitFor("the idle connection closed", func() bool { return !h.kvs.Connected(testStream) })
	h.append(frags[2:]...)
	h.waitAllAcked()
	got := h.check(nil)
	if len(got) != len(frags) || h.kvs.Connections(testStream) != 2 {
		t.Errorf("%d fragments on %d connections, want %d on 2", len(got), h.kvs.Connections(testStream), len(frags))
	}
}

// A new codec configuration starts a new connection (a new Segment).
func TestCodecChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	start := testStart()
	a := clipFragments(t, "baseline-repeat.h264", 1, start)
	b := clipFragments(t, "baseline-360p.h264", 1, start.Add(time.Minute))
	h.append(a...)
	h.append(b...)
	h.start()
	h.waitAllAcked()
	h.check(nil)
	if n := h.kvs.Connections(testStream); n != 2 {
		t.Errorf("%d connections, want 2 (one per codec configuration)", n)
	}
}

// Streams without retention are acknowledged on RECEIVED.
func TestNoRetention(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withRetention(0))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	h.start()
	h.waitAllAcked()
	got := h.check(nil)
	// One connection carried the whole clip: its pictures must be
	// identical to decoding the source clip itself.
	if len(got) != len(frags) || got[0].File != got[len(got)-1].File {
		t.Fatalf("%d fragments over several files; want one connection", len(got))
	}
	frames := 0
	for _, f := range frags {
		frames += f.Frames
	}
	mkvcheck.Check(t, got[0].File, mkvcheck.Expect{Frames: frames, Source: filepath.Join("..", "..", "testdata", "baseline-repeat.h264")})
}

func TestStreamMissing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withoutStream())
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	h.start()
	h.waitFor("an alert about the missing stream", func() bool {
		return strings.Contains(h.s.Stats().Alert, "create_stream = true")
	})
	if _, ok := h.ring.FirstUnacked(); !ok {
		t.Fatal("data acknowledged with no stream to upload to")
	}
	// The operator creates the stream; the next attempt uploads.
	if _, err := h.kvs.CreateStream(testStream, time.Hour); err != nil {
		t.Fatal(err)
	}
	h.waitAllAcked()
	h.check(nil)
}

func TestCreateStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withoutStream(), withConfig(func(c *Config) {
		c.CreateStream = true
		c.Retention = 90 * time.Minute
	}))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	h.start()
	h.waitAllAcked()
	h.check(nil)
	info, ok := h.kvs.Stream(testStream)
	if !ok || info.DataRetentionInHours != 2 || info.MediaType != "video/h264" {
		t.Errorf("created stream %+v, want retention 2 h (90 min rounded up) and video/h264", info)
	}
}

// Record mode uploads only what is asked for.
func TestRecordMode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.Mode = ModeRecord }))
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags...)
	h.start()
	from, to := frags[3].Time(), frags[6].Time()
	n, _, err := h.s.UploadRange(from, to)
	if err != nil || n != 3 {
		t.Fatalf("UploadRange = %d, %v; want 3 fragments", n, err)
	}
	h.waitFor("the requested range uploaded", func() bool { return len(h.kvs.Fragments(testStream)) == 3 })
	h.waitFor("the sender idle again", func() bool { return h.s.Stats().State == "waiting for data" })
	got := h.kvs.Fragments(testStream)
	if len(got) != 3 || got[0].Timecode != frags[3].Timecode || got[2].Timecode != frags[5].Timecode {
		t.Errorf("record mode uploaded %v, want fragments 3..5", got)
	}
	for _, f := range frags[3:6] {
		if !h.store.wasAcked(h.ids[f.Timecode]) {
			t.Errorf("fragment %d uploaded but not acknowledged", f.Timecode)
		}
	}
	if id, ok := h.ring.FirstUnacked(); !ok || id != h.ids[frags[0].Timecode] {
		t.Errorf("first unacked = %d, %v: record mode must keep the rest", id, ok)
	}
	if _, _, err := h.s.UploadRange(to, from); err == nil {
		t.Error("UploadRange accepted an end before the start")
	}
}

// On shutdown the sender ends the body and waits for the outstanding
// acknowledgements, so a restart does not send the last fragments again.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withKVS(func(o *kvslocal.Options) { o.PersistDelay = 300 * time.Millisecond }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	h.start()
	h.waitFor("every fragment sent", func() bool { return h.s.Stats().Sent == uint64(len(frags)) })
	if _, ok := h.ring.FirstUnacked(); !ok {
		t.Fatal("everything acknowledged before PersistDelay: the test proves nothing")
	}
	h.stop()
	if id, ok := h.ring.FirstUnacked(); ok {
		t.Errorf("fragment %d still unacknowledged after a clean stop", id)
	}
	h.check(nil)
}

// A fragment the capture side flushes while the daemon stops still goes
// out on the open connection.
func TestShutdownSendsFlushedFragment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags[:3]...)
	h.start()
	h.waitAllAcked()
	if !h.kvs.Connected(testStream) {
		t.Fatal("no open connection to test with")
	}
	h.cancel()
	h.append(frags[3]) // like the fragmenter's final flush, just after the stop began
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Run did not return")
	}
	h.cancel = nil
	if id, ok := h.ring.FirstUnacked(); ok {
		t.Errorf("fragment %d flushed at stop was not uploaded", id)
	}
	h.check(nil)
}

// A fragment acknowledged out of order before a restart (say PERSISTED
// while an earlier one was still being retried) is not sent again.
func TestRestartSkipsAcknowledged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck())
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	done := frags[2].Timecode
	if err := h.ring.Ack(h.ids[done]); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitAllAcked()
	h.check(map[int64]bool{done: true})
	h.mu.Lock()
	n := h.sentCount[h.ids[done]]
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("fragment acknowledged before the start was sent %d times", n)
	}
}

// Short-lived credentials (as the IoT credentials provider hands out):
// the sender rotates connections at fragment boundaries before the
// credentials they were signed with expire, fetching new ones each time.
func TestShortLivedCredentials(t *testing.T) {
	t.Parallel()
	var kvs *kvslocal.Server
	prov := &countingProvider{}
	prov.next = func() aws.Credentials { return kvs.IssueCredentials(1500 * time.Millisecond) }
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) {
		c.Credentials = prov
		c.CredentialMargin = 500 * time.Millisecond
	}))
	kvs = h.kvs
	frags := clipFragments(t, "baseline-repeat.h264", 3, testStart())
	h.start()
	for _, f := range frags {
		h.append(f)
		time.Sleep(200 * time.Millisecond) // camera pacing, not synchronisation
	}
	h.waitAllAcked()
	h.check(nil)
	st := h.s.Stats()
	if st.Connections < 2 || prov.count() < 2 {
		t.Errorf("%d connections, %d credential fetches over %d s of 1.5 s credentials: want rotation", st.Connections, prov.count(), len(frags)/5)
	}
	if strings.Contains(st.LastError, "expired") {
		t.Errorf("last error %q: rotation should have come before expiry", st.LastError)
	}
}

// Failures that are retried quietly raise an alert when they go on.
func TestRepeatedFailuresAlert(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) {
		c.Backoff = backoff.New(time.Millisecond, 5*time.Millisecond)
		c.MaxAttempts = 2 * alertAfterAttempts // not set aside before the alert
	}))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	for range alertAfterAttempts {
		if err := h.kvs.FailFragment(testStream, 5001, 0); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	h.waitFor("an alert about repeated failures", func() bool {
		return strings.Contains(h.s.Stats().Alert, "5001")
	})
	h.waitAllAcked()
	h.check(nil)
	if st := h.s.Stats(); st.Alert != "" {
		t.Errorf("alert %q not cleared after recovery", st.Alert)
	}
}

// A backlog does not hold up a stop: the sender stops taking fragments
// ShutdownGrace after the stop, and what it did not send stays in the ring.
func TestShutdownWithBacklogIsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.ShutdownGrace = 200 * time.Millisecond }))
	frags := clipFragments(t, "baseline-repeat.h264", 4, testStart())
	if err := h.kvs.SlowReader(testStream, 100_000); err != nil {
		t.Fatal(err)
	}
	h.append(frags...)
	h.start()
	h.waitFor("the first fragment acknowledged", func() bool { return h.s.Stats().Acked >= 1 })
	began := time.Now()
	h.stop()
	// Bound: ShutdownGrace, plus the fragment being written at the slow
	// rate (~0.3 s), plus the drain; the hard cut comes at 2 x DrainTimeout.
	if took := time.Since(began); took > 2*h.cfg.DrainTimeout+time.Second {
		t.Errorf("stop took %v with a backlog", took)
	}
	if _, ok := h.ring.FirstUnacked(); !ok {
		t.Fatal("the whole backlog went out before the stop: the test proves nothing")
	}
	// The rest waits in the ring for the next start.
	got := h.kvs.Fragments(testStream)
	if len(got) >= len(frags) {
		t.Errorf("endpoint has %d of %d fragments", len(got), len(frags))
	}
}
