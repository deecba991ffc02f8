package sender

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdkcreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/clock"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// storedOnce checks that every appended fragment not in gone is stored
// exactly once and persisted, and returns how often each timecode was
// stored.
func (h *harness) storedOnce(gone map[int64]bool) {
	h.t.Helper()
	count := map[int64]int{}
	persisted := map[int64]bool{}
	for _, f := range h.kvs.Fragments(testStream) {
		count[f.Timecode]++
		persisted[f.Timecode] = persisted[f.Timecode] || f.Persisted
	}
	for _, tc := range h.order {
		switch {
		case gone[tc] && count[tc] != 0:
			h.t.Errorf("fragment %d stored %d times, want never", tc, count[tc])
		case !gone[tc] && count[tc] != 1:
			h.t.Errorf("fragment %d (ring id %d) stored %d times, want exactly once", tc, h.ids[tc], count[tc])
		case !gone[tc] && !persisted[tc] && h.retention > 0:
			h.t.Errorf("fragment %d stored but never PERSISTED", tc)
		}
	}
}

// A fragment that keeps failing with a retryable code is set aside after
// MaxAttempts, the fragments behind it go on, and it is retried later.
func TestPoisonFragmentSetAside(t *testing.T) {
	t.Parallel()
	for _, order := range []string{OrderLiveFirst, OrderInOrder} {
		t.Run(order, func(t *testing.T) {
			t.Parallel()
			testPoisonFragment(t, order)
		})
	}
}

func testPoisonFragment(t *testing.T, order string) {
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) {
		c.UploadOrder = order
		c.MaxAttempts = 3
		c.SetAsideRetry = time.Hour // retried below by moving its time
	}))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	for range 3 {
		// Each armed failure hits the next fragment to start: the first
		// connection lets fragment 0 through, every later one starts
		// with the poisoned fragment 1.
		if err := h.kvs.FailFragment(testStream, 5001, 1); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	poison := h.ids[frags[1].Timecode]
	h.waitFor("the poisoned fragment set aside and the rest stored", func() bool {
		st := h.s.Stats()
		return st.SetAside == 1 && st.Acked == uint64(len(frags)-1)
	})
	st := h.s.Stats()
	if st.SetAsideTotal != 1 || !strings.Contains(st.Alert, "set aside") || !strings.Contains(st.Alert, "5001") {
		t.Errorf("stats %+v: want one fragment set aside and reported in the alert", st)
	}
	if id, ok := h.ring.FirstUnacked(); !ok || id != poison {
		t.Errorf("first unacknowledged %d %v: the set-aside fragment %d must stay in the ring", id, ok, poison)
	}
	h.mu.Lock()
	n := h.sentCount[poison]
	h.mu.Unlock()
	if n != 3 {
		t.Errorf("poisoned fragment sent %d times before being set aside, want MaxAttempts = 3", n)
	}
	// Its retry time comes: it goes out at low priority and is stored.
	h.s.mu.Lock()
	h.s.aside[poison].NextTry = time.Now()
	h.s.mu.Unlock()
	h.waitAllAcked()
	h.storedOnce(nil)
	h.check(nil)
	if st := h.s.Stats(); st.SetAside != 0 || st.Skipped != 0 {
		t.Errorf("stats %+v: want nothing set aside or skipped once the retry worked", st)
	}
}

// The set-aside list survives a restart: the new sender does not block
// on the fragment, and retries it only when its time comes.
func TestSetAsideSurvivesRestart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "setaside.json")
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) {
		c.MaxAttempts = 1
		c.SetAsideRetry = time.Hour
		c.SetAsideFile = file
	}))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags[:3]...)
	if err := h.kvs.FailFragment(testStream, 5000, 1); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitFor("one fragment set aside", func() bool {
		st := h.s.Stats()
		return st.SetAside == 1 && st.Acked == 2
	})
	h.stop()
	var doc setAsideFile
	b, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(b, &doc)
	}
	poison := h.ids[frags[1].Timecode]
	if err != nil || len(doc.Fragments) != 1 || doc.Fragments[0].ID != poison || doc.Fragments[0].Code != 5000 {
		t.Fatalf("set-aside file %s: %+v, %v; want fragment %d with error 5000", file, doc, err, poison)
	}
	h.mu.Lock()
	before := h.sentCount[poison]
	h.mu.Unlock()

	// A new sender on the same ring and file.
	h.start()
	h.append(frags[3:]...)
	h.waitFor("the fragments after the restart stored", func() bool { return h.s.Stats().Acked == uint64(len(frags)-3) })
	if st := h.s.Stats(); st.SetAside != 1 {
		t.Errorf("stats %+v after the restart: want the fragment still set aside", st)
	}
	h.mu.Lock()
	after := h.sentCount[poison]
	h.mu.Unlock()
	if after != before {
		t.Errorf("set-aside fragment sent %d times after the restart before its retry time", after-before)
	}
	h.s.mu.Lock()
	h.s.aside[poison].NextTry = time.Now()
	h.s.mu.Unlock()
	h.waitAllAcked()
	h.storedOnce(nil)
}

// 4007 (timestamp in the future) sets the fragment aside at once and
// reports it; the fragments behind it are not held up.
func TestFutureTimestampSetAside(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.SetAsideRetry = time.Hour }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	if err := h.kvs.FailFragment(testStream, 4007, 1); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitFor("the rest stored with the 4007 fragment set aside", func() bool {
		st := h.s.Stats()
		return st.SetAside == 1 && st.Acked == uint64(len(frags)-1)
	})
	if st := h.s.Stats(); !strings.Contains(st.Alert, "4007") || !strings.Contains(st.Alert, "clock") {
		t.Errorf("alert %q: want the 4007 reported with the device clock hint", st.Alert)
	}
	poison := h.ids[frags[1].Timecode]
	h.mu.Lock()
	n := h.sentCount[poison]
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("4007 fragment sent %d times before being set aside, want once", n)
	}
	h.s.mu.Lock()
	h.s.aside[poison].NextTry = time.Now()
	h.s.mu.Unlock()
	h.waitAllAcked()
	h.storedOnce(nil)
}

// 4004 is about the connection, not the fragment: a new connection
// starts with it and nothing is given up.
func TestTimecodeRefusalRestarts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck())
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	if err := h.kvs.FailFragment(testStream, 4004, 2); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitAllAcked()
	h.check(nil)
	st := h.s.Stats()
	if st.Skipped != 0 || st.SetAside != 0 || st.Restarts != 1 || st.Connections < 2 {
		t.Errorf("stats %+v: want one restart, nothing skipped or set aside", st)
	}
	refused := h.ids[frags[2].Timecode]
	h.mu.Lock()
	n := h.sentCount[refused]
	h.mu.Unlock()
	if n != 2 {
		t.Errorf("refused fragment sent %d times, want twice (refused, then first of a new connection)", n)
	}
}

// Skip codes: single refusals are skipped, but several in a row with the
// same code open the circuit breaker: data is kept and an alert raised.
func TestSkipCircuitBreaker(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.SkipBreaker = 3 }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	for range 4 {
		if err := h.kvs.FailFragment(testStream, 4006, 0); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	h.waitFor("the breaker alert", func() bool { return strings.Contains(h.s.Stats().Alert, "no longer skipping") })
	if st := h.s.Stats(); st.Skipped != 2 {
		t.Errorf("stats %+v: want exactly 2 fragments skipped before the breaker opened", st)
	}
	kept := h.ids[frags[2].Timecode]
	if id, ok := h.ring.FirstUnacked(); !ok || id != kept {
		t.Errorf("first unacknowledged %d %v: want fragment %d kept", id, ok, kept)
	}
	// The cause goes away (the armed refusals run out): everything kept
	// is stored, and the alert clears.
	h.waitAllAcked()
	gone := map[int64]bool{frags[0].Timecode: true, frags[1].Timecode: true}
	h.storedOnce(gone)
	if st := h.s.Stats(); st.Skipped != 2 || st.Alert != "" {
		t.Errorf("stats %+v: want 2 skipped and the alert cleared", st)
	}
}

// A connection that takes data but never acknowledges it is dropped by
// the staleness rule, whatever the retention; progress of the writes does
// not keep it alive.
func TestStaleConnection(t *testing.T) {
	t.Parallel()
	for _, ret := range []time.Duration{0, 24 * time.Hour} {
		t.Run(ret.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, quickCheck(), withRetention(ret), withConfig(func(c *Config) {
				// Only staleness can notice: the other time-outs are long.
				c.AckTimeout, c.PersistTimeout, c.StallTimeout = time.Minute, time.Minute, time.Minute
				c.StaleWait = 300 * time.Millisecond
			}))
			frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
			release, err := h.kvs.StallAcks(testStream)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			h.append(frags...)
			h.start()
			h.waitFor("a stale connection dropped", func() bool {
				st := h.s.Stats()
				return st.Stale >= 1 && strings.Contains(st.LastError, "does not answer")
			})
			if _, ok := h.ring.FirstUnacked(); !ok {
				t.Fatal("fragments acknowledged while the endpoint sent no acknowledgements")
			}
			release()
			h.waitAllAcked()
			h.check(nil)
		})
	}
}

// skewedClock is a device clock off by a fixed amount.
type skewedClock struct {
	clock.System
	off time.Duration
}

func (c skewedClock) Now() time.Time { return time.Now().Add(c.off) }

// A device clock 20 minutes slow: the control plane and PutMedia refuse
// the request time; the sender learns the offset from the Date header
// and signs with it.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	const off = -20 * time.Minute
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.Clock = skewedClock{off: off} }))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()
	learnt := h.s.Stats().ClockOffset
	if d := learnt + off; d > 2*time.Second || d < -2*time.Second {
		t.Errorf("clock offset %v learnt, want about %v", learnt, -off)
	}
	// Forget it: the next PutMedia (the control plane answers are cached)
	// is refused and learns it again.
	h.s.clockOffset.Store(0)
	if err := h.kvs.DropConnection(testStream, 10); err != nil {
		t.Fatal(err)
	}
	h.append(frags[2:]...)
	h.waitAllAcked()
	h.check(nil)
	st := h.s.Stats()
	if d := st.ClockOffset + off; d > 2*time.Second || d < -2*time.Second || !strings.Contains(st.LastError, "Signature expired") {
		t.Errorf("stats %+v: want the PutMedia refusal and the offset learnt again", st)
	}
}

// invalidatingProvider behaves like a credentials cache: it hands out the
// same credentials until Invalidate, which the sender must call when they
// are about to expire.
type invalidatingProvider struct {
	mu          sync.Mutex
	cur         credentials.Credentials
	issue       func(fresh bool) aws.Credentials
	invalidated int
}

func (p *invalidatingProvider) Retrieve(context.Context) (credentials.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur.AccessKeyID == "" {
		p.cur = fromSDK(p.issue(p.invalidated > 0))
	}
	return p.cur, nil
}

func (p *invalidatingProvider) Invalidate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = credentials.Credentials{}
	p.invalidated++
}

// Credentials near expiry are replaced by fresh ones, not used for one
// fragment per connection.
func TestNearExpiryCredentialsRefreshed(t *testing.T) {
	t.Parallel()
	var kvs *kvslocal.Server
	prov := &invalidatingProvider{issue: func(fresh bool) aws.Credentials {
		if fresh {
			return kvs.IssueCredentials(time.Hour)
		}
		return kvs.IssueCredentials(30 * time.Second) // inside the margin
	}}
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) {
		c.Credentials = prov
		c.CredentialMargin = time.Minute
	}))
	kvs = h.kvs
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags...)
	h.start()
	h.waitAllAcked()
	h.check(nil)
	prov.mu.Lock()
	inv := prov.invalidated
	prov.mu.Unlock()
	if st := h.s.Stats(); st.Connections != 1 || inv != 1 {
		t.Errorf("%d connections, %d invalidations: want fresh credentials fetched once and one connection for %d fragments", st.Connections, inv, len(frags))
	}
}

// Live first: after an outage, live video goes out while the backlog
// drains in the spare capacity; nothing is lost or stored twice.
func TestLiveFirstAfterOutage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(), withConfig(func(c *Config) { c.MaxLiveLag = 2 * time.Second }))
	frags := clipFragments(t, "baseline-repeat.h264", 6, testStart())
	if len(frags) < 25 {
		t.Fatalf("only %d fragments", len(frags))
	}
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()
	h.kvs.Down(kvslocal.Refused, 0)
	backlog := frags[2:17]
	h.append(backlog...)
	h.waitFor("the sender backing off", func() bool { return strings.HasPrefix(h.s.Stats().State, "backing off") })
	// Live fragments come every 300 ms (3.3 times real time, to keep the
	// test short) over a link carrying six fragments a second: live video
	// needs a little over half of it, and the backlog drains in the rest
	// over several seconds.
	total := 0
	for _, f := range frags {
		total += len(f.Cluster)
	}
	if err := h.kvs.SlowReader(testStream, int64(6*total/len(frags))); err != nil {
		t.Fatal(err)
	}
	h.kvs.Up()
	sawBacklog := false
	for _, f := range frags[17:] {
		h.append(f)
		if st := h.s.Stats(); st.Backlog > 0 {
			sawBacklog = true
		}
		time.Sleep(300 * time.Millisecond) // camera pacing, not synchronisation
	}
	h.waitAllAcked()
	h.storedOnce(nil)
	h.check(nil)
	if !sawBacklog {
		t.Error("no backlog reported while it drained")
	}
	// The first live fragment must have arrived before the backlog was
	// through: arrival order is the endpoint's record order.
	got := h.kvs.Fragments(testStream)
	inBacklog := map[int64]bool{}
	for _, f := range backlog {
		inBacklog[f.Timecode] = true
	}
	firstLive, lastBacklog := -1, -1
	for i, f := range got {
		if f.Timecode == frags[17].Timecode {
			firstLive = i
		}
		if inBacklog[f.Timecode] {
			lastBacklog = i
		}
	}
	var order []int64
	for _, f := range got {
		order = append(order, (f.Timecode-frags[0].Timecode)/1000)
	}
	t.Logf("arrival order (seconds from the first fragment): %v", order)
	if firstLive < 0 || lastBacklog < 0 || firstLive > lastBacklog {
		t.Errorf("first live fragment stored at %d, last backlog fragment at %d: live video waited for the backlog", firstLive, lastBacklog)
	}
	if st := h.s.Stats(); st.Backlog != 0 || st.LiveLag != 0 || st.UploadOrder != OrderLiveFirst {
		t.Errorf("stats %+v: want no backlog and no lag at the end", st)
	}
}

// A gap between fragments sent on one connection is closed with the
// end-of-fragment tag.
func TestContiguous(t *testing.T) {
	f := func(id int64, tc int64, d time.Duration) item {
		return item{id: ring.ID(id), f: fragmenter.Fragment{Timecode: tc, Duration: d}}
	}
	cases := []struct {
		a, b item
		want bool
	}{
		{f(1, 1000, time.Second), f(2, 2000, time.Second), true},
		{f(1, 1000, time.Second), f(2, 2033, time.Second), true},
		{f(1, 1000, time.Second), f(3, 2000, time.Second), false},
		{f(1, 1000, time.Second), f(2, 9000, time.Second), false},
	}
	for _, c := range cases {
		if got := contiguous(c.a, c.b); got != c.want {
			t.Errorf("contiguous(%d@%d, %d@%d) = %v, want %v", c.a.id, c.a.f.Timecode, c.b.id, c.b.f.Timecode, got, c.want)
		}
	}
}

// A retention changed while the sender runs is noticed: with retention
// the fragments are acknowledged on PERSISTED instead of RECEIVED.
func TestRetentionChangeNoticed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(), withRetention(0), withConfig(func(c *Config) {
		c.EndpointTTL = 200 * time.Millisecond
		c.IdleClose = 300 * time.Millisecond
	}))
	frags := clipFragments(t, "baseline-repeat.h264", 1, testStart())
	h.append(frags[:2]...)
	h.start()
	h.waitAllAcked()
	client := kinesisvideo.New(kinesisvideo.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(h.kvs.URL),
		Credentials:  sdkcreds.StaticCredentialsProvider{Value: h.kvs.Credentials()},
	})
	ctx := context.Background()
	out, err := client.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(testStream)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.UpdateDataRetention(ctx, &kinesisvideo.UpdateDataRetentionInput{
		StreamName:                 aws.String(testStream),
		CurrentVersion:             out.StreamInfo.Version,
		Operation:                  types.UpdateDataRetentionOperationIncreaseDataRetention,
		DataRetentionChangeInHours: aws.Int32(24),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.waitFor("the new retention noticed", func() bool { return h.s.Stats().Retention == 24*time.Hour })
	h.retention = 24 * time.Hour // storedOnce now checks PERSISTED
	h.waitFor("the idle connection closed", func() bool { return !h.kvs.Connected(testStream) })
	later := frags[2:]
	h.append(later...)
	h.waitAllAcked()
	persisted := map[int64]bool{}
	for _, f := range h.kvs.Fragments(testStream) {
		persisted[f.Timecode] = persisted[f.Timecode] || f.Persisted
	}
	for _, f := range later {
		if !persisted[f.Timecode] {
			t.Errorf("fragment %d acknowledged in the ring but not PERSISTED after retention was added", f.Timecode)
		}
	}
}

// Fragments stamped ahead of the clock (recorded before the clock was
// stepped back) are refused with 4007 and set aside, but tried again as
// soon as the clock has passed them, not after the set-aside back-off.
func TestFutureFragmentsRetriedWhenClockCatchesUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, quickCheck(),
		withConfig(func(c *Config) { c.SetAsideRetry = time.Hour }),
		withKVS(func(o *kvslocal.Options) { o.MaxFutureTimestamp = 200 * time.Millisecond }))
	ahead := time.Now().Add(3 * time.Second).Truncate(time.Millisecond)
	future := clipFragments(t, "baseline-repeat.h264", 1, ahead)
	h.append(future...)
	h.start()
	h.waitFor("the future fragments set aside", func() bool { return h.s.Stats().SetAsideTotal >= 1 })
	h.waitAllAcked()
	last := future[len(future)-1]
	if end := time.UnixMilli(last.Timecode).Add(last.Duration); time.Now().Before(end) {
		t.Errorf("the last future fragment was stored before its end %v", end)
	}
	h.storedOnce(nil)
	if st := h.s.Stats(); st.SetAside != 0 {
		t.Errorf("stats %+v: nothing should remain set aside", st)
	}
}
