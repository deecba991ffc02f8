package sender

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/clock"
)

func clusterBytes(frags []fragmenter.Fragment) int64 {
	n := int64(0)
	for _, f := range frags {
		n += int64(len(f.Cluster))
	}
	return n
}

// Settings changed on a Sender that is not running are validated and show
// in Stats.
func TestLiveSettingsValidation(t *testing.T) {
	r, err := ring.Open(t.TempDir(), ring.Options{Capacity: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := New(Config{Stream: "cam", Region: "eu-west-1", Ring: r, Credentials: credentials.StaticProvider{Value: credentials.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}}, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Mode != ModeLive || st.RateLimit != 1000 || s.Mode() != ModeLive {
		t.Errorf("stats %+v, mode %q: want live at 1000 B/s", st, s.Mode())
	}
	if err := s.SetRateLimit(-1); err == nil {
		t.Error("SetRateLimit(-1) accepted")
	}
	if err := s.SetMode("sometimes"); err == nil || !strings.Contains(err.Error(), `"live"`) || !strings.Contains(err.Error(), `"record"`) {
		t.Errorf("SetMode(sometimes) = %v; want an error naming live and record", err)
	}
	if err := s.SetRateLimit(0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMode(ModeRecord); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Mode != ModeRecord || st.RateLimit != 0 || s.Mode() != ModeRecord {
		t.Errorf("stats %+v after SetMode(record), SetRateLimit(0)", st)
	}
}

// Changing the bucket's rate paces what follows at the new rate, and a
// debt taken at the old rate is still paid.
func TestBucketSetRate(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	clk := clock.NewFake(t0)
	clk.AutoAdvance() // each sleep moves the clock on by its length
	slept := func() time.Duration { return clk.Now().Sub(t0) }
	b := newBucket(clk, 1000, 100)
	ctx := context.Background()
	if err := b.wait(ctx, 100); err != nil { // the burst: no wait
		t.Fatal(err)
	}
	b.setRate(100, 10)
	if err := b.wait(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if slept() < 990*time.Millisecond || slept() > 1010*time.Millisecond {
		t.Errorf("slept %v for 100 tokens at 100/s with none saved, want 1 s", slept())
	}
	b.setRate(0, 0)
	before := slept()
	if err := b.wait(ctx, 1e9); err != nil || slept() != before {
		t.Errorf("unlimited bucket slept %v (%v)", slept()-before, err)
	}
}

// Lowering the rate limit of a running upload slows it on the open
// connection.
func TestSetRateLimitSlowsRunningUpload(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck())
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()

	rest := frags[2:]
	total := clusterBytes(rest)
	// About four seconds of sending: well above what the fragment-rate
	// quota alone costs for these fragments.
	limit := total / 4
	if err := h.s.SetRateLimit(limit); err != nil {
		t.Fatal(err)
	}
	if st := h.s.Stats(); st.RateLimit != limit {
		t.Errorf("stats rate limit %d, want %d", st.RateLimit, limit)
	}
	began := time.Now()
	h.append(rest...)
	h.waitAllAcked()
	took := time.Since(began)
	// What the bucket may hold at the new rate goes out at once; the rest
	// at most at the limit.
	burst := max(limit/10, chunkSize)
	if min := time.Duration(float64(total-burst) / float64(limit) * float64(time.Second)); took < min {
		t.Errorf("%d bytes after lowering the limit to %d B/s took %v, want at least %v", total, limit, took, min)
	}
	h.check(nil)
	if st := h.s.Stats(); st.Connections != 1 {
		t.Errorf("stats %+v: the new limit must apply to the open connection", st)
	}
}

// Raising the limit wakes a write that waits for tokens at the old rate.
func TestSetRateLimitRaiseWakesWrite(t *testing.T) {
	t.Parallel()
	const slow = 1000 // B/s: one chunk beyond the burst waits over a minute
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.RateLimit = slow }))
	frags := camFragments(t, 1, testStart())
	h.append(frags...)
	h.start()
	// The burst (one chunk: the stream header and the fragment's head,
	// which ends a little short of a chunk) goes out at once; the second
	// chunk waits.
	h.waitFor("the first chunk written", func() bool { return h.s.Stats().Bytes >= chunkSize/2 })
	began := time.Now()
	if err := h.s.SetRateLimit(0); err != nil {
		t.Fatal(err)
	}
	h.waitAllAcked()
	// At the old rate the second chunk alone needed chunkSize/slow.
	if took, old := time.Since(began), time.Duration(chunkSize/slow)*time.Second; took >= old/2 {
		t.Errorf("upload took %v after lifting the limit; the old rate needed %v for one chunk", took, old)
	}
	h.check(nil)
}

// Record to live uploads the backlog from the resume point.
func TestSetModeRecordToLive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.Mode = ModeRecord }))
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags...)
	h.start()
	// One requested fragment proves the sender runs in record mode.
	if n, _, err := h.s.UploadRange(frags[2].Time(), frags[3].Time()); err != nil || n != 1 {
		t.Fatalf("UploadRange = %d, %v; want 1", n, err)
	}
	h.waitFor("the requested fragment acknowledged", func() bool { return h.store.wasAcked(h.ids[frags[2].Timecode]) })
	if got := h.kvs.Fragments(testStream); len(got) != 1 {
		t.Fatalf("record mode uploaded %d fragments, want only the requested one", len(got))
	}
	if err := h.s.SetMode(ModeLive); err != nil {
		t.Fatal(err)
	}
	h.waitAllAcked()
	got := h.check(nil)
	if len(got) != len(frags) {
		t.Errorf("endpoint stored %d fragments, want %d, each once", len(got), len(frags))
	}
	st := h.s.Stats()
	if st.Mode != ModeLive || st.LiveLag != 0 || !st.NewestAcked.Equal(frags[len(frags)-1].Time()) {
		t.Errorf("stats %+v: want live, no lag, newest acknowledged %v", st, frags[len(frags)-1].Time())
	}
	// Live follows new data too.
	more := clipFragments(t, "baseline-repeat.h264", 1, frags[len(frags)-1].End().Add(time.Second))
	h.append(more...)
	h.waitAllAcked()
}

// Live to record stops uploading what was not sent yet; UploadRange still
// uploads what it asks for.
func TestSetModeLiveToRecord(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()
	st := h.s.Stats()
	if st.LastAck.IsZero() || !st.NewestAcked.Equal(frags[1].Time()) || st.LiveLag != 0 {
		t.Errorf("stats %+v: want a last ack, newest acknowledged %v and no lag", st, frags[1].Time())
	}
	if err := h.s.SetMode(ModeRecord); err != nil {
		t.Fatal(err)
	}
	h.append(frags[2:6]...)
	if n, _, err := h.s.UploadRange(frags[4].Time(), frags[5].Time()); err != nil || n != 1 {
		t.Fatalf("UploadRange = %d, %v; want 1", n, err)
	}
	wanted := h.ids[frags[4].Timecode]
	h.waitFor("the requested fragment acknowledged", func() bool { return h.store.wasAcked(wanted) })
	// A live upload would have sent fragments 2 and 3 before 4, in ring
	// order; none of them may have gone out.
	h.mu.Lock()
	for _, f := range []fragmenter.Fragment{frags[2], frags[3], frags[5]} {
		if n := h.sentCount[h.ids[f.Timecode]]; n != 0 {
			t.Errorf("fragment %d sent %d times after switching to record mode", f.Timecode, n)
		}
	}
	h.mu.Unlock()
	got := h.kvs.Fragments(testStream)
	if len(got) != 3 || got[2].Timecode != frags[4].Timecode {
		t.Errorf("endpoint stored %v; want fragments 0, 1 and 4", got)
	}
	if id, ok := h.ring.FirstUnacked(); !ok || id != h.ids[frags[2].Timecode] {
		t.Errorf("first unacked %d, %v; want fragment 2 kept", id, ok)
	}
	st = h.s.Stats()
	wantLag := frags[5].End().Sub(frags[4].End())
	if st.Mode != ModeRecord || !st.NewestAcked.Equal(frags[4].Time()) || st.LiveLag != wantLag {
		t.Errorf("stats %+v: want record mode, newest acknowledged %v, lag %v", st, frags[4].Time(), wantLag)
	}
}

// In record mode, a request for fragments before what the open connection
// already sent is served by a new connection, not refused for timecodes
// that go back.
func TestRecordModeEarlierRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.Mode = ModeRecord }))
	frags := clipFragments(t, "baseline-repeat.h264", 2, testStart())
	h.append(frags...)
	h.start()
	for _, i := range []int{6, 2} {
		if n, _, err := h.s.UploadRange(frags[i].Time(), frags[i+1].Time()); err != nil || n != 1 {
			t.Fatalf("UploadRange(fragment %d) = %d, %v; want 1", i, n, err)
		}
		id := h.ids[frags[i].Timecode]
		h.waitFor("the requested fragment acknowledged", func() bool { return h.store.wasAcked(id) })
	}
	if st := h.s.Stats(); st.Skipped != 0 {
		t.Errorf("stats %+v: a requested fragment was refused", st)
	}
	if got := h.kvs.Fragments(testStream); len(got) != 2 || got[0].Timecode != frags[6].Timecode || got[1].Timecode != frags[2].Timecode {
		t.Errorf("endpoint stored %v; want fragments 6 and 2", got)
	}
}

// A fragment evicted while it is being sent: the sender reads its cluster
// from the ring as it writes it, so the rest is gone. The connection ends
// without the tail, the endpoint stores nothing of that fragment, and the
// fragments behind it go out.
func TestEvictedWhileSending(t *testing.T) {
	t.Parallel()
	const slow = 1000 // B/s: the chunk after the first waits over a minute
	h := newHarness(t, withRingCapacity(4<<20), withConfig(func(c *Config) { c.RateLimit = slow }))
	frags := camFragments(t, 16, testStart())
	h.append(frags[0])
	h.start()
	h.waitFor("the first chunk written", func() bool { return h.s.Stats().Bytes >= chunkSize/2 })
	n := 1
	for h.ring.Stats().Lost == 0 {
		if n == len(frags) {
			t.Fatalf("%d fragments appended to a 4 MiB ring and the first still stored", n)
		}
		h.append(frags[n])
		n++
	}
	if err := h.s.SetRateLimit(0); err != nil {
		t.Fatal(err)
	}
	h.waitAllAcked()
	if st := h.ring.Stats(); st.Lost != 1 {
		t.Fatalf("ring lost %d fragments, want only the one being sent", st.Lost)
	}
	h.check(map[int64]bool{frags[0].Timecode: true})
	if st := h.s.Stats(); st.Connections < 2 {
		t.Errorf("stats %+v: the connection sending the evicted fragment must end", st)
	}
}
