//go:build faults

package faulttest

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender"
	"github.com/kvscamd/kvscamd/kvslocal"
)

var liveBound = maxLiveLag + liveMargin

// A backlog builds up while the link is down; then the link comes back at
// 1.2 times the video bitrate. Live video must stay within max_live_lag
// while the backlog drains oldest-first in the spare 0.2.
func TestRateAfterBacklog(t *testing.T) {
	t.Parallel()
	r := newRig(t, "rate12", 1, rigOpts{})
	defer r.finish()
	backlog := pick(24*time.Second, 10*time.Minute)
	if err := r.link.SetUp(false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.start()
	r.hold(backlog)
	vr := videoRate(t)
	const factor = 1.2
	if err := r.link.SetRate(int64(vr * factor)); err != nil {
		t.Fatal(err)
	}
	if err := r.link.SetUp(true); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	// Draining in the spare capacity takes backlog/(factor-1) at best.
	ideal := time.Duration(float64(backlog) / (factor - 1))
	last, stored := r.drainAll(up, 2*ideal+30*time.Second)
	stop := time.Now()
	r.judgeLive(up.Add(3*time.Second), stop.Add(-2*time.Second), liveBound, "live during the drain")
	r.recovered(up, liveBound)
	if !last.IsZero() {
		b := r.backlogBytes(stored, start, up)
		drain := last.Sub(up).Seconds()
		spare := vr * (factor - 1) / 8
		r.res.DrainKBps = float64(b) / drain / 1000
		r.res.DrainFraction = float64(b) / drain / spare
		t.Logf("backlog of %d bytes drained in %.1f s: %.2f of the spare %.0f B/s", b, drain, r.res.DrainFraction, spare)
	}
}

// The link carries only 0.6 of the bitrate: the ring grows and nothing is
// lost; when the link widens, the backlog drains and live returns.
func TestBelowBitrate(t *testing.T) {
	t.Parallel()
	r := newRig(t, "rate06", 2, rigOpts{})
	defer r.finish()
	narrow := pick(20*time.Second, 3*time.Minute)
	vr := videoRate(t)
	if err := r.link.SetRate(int64(vr * 0.6)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.start()
	r.hold(narrow)
	// The ring holds more than the endpoint has: the backlog grew.
	stored := r.ringFragments()
	have := persistedCount(r.kvs.Fragments(streamName))
	waiting := 0
	for _, f := range stored {
		if have[f.tc] == 0 {
			waiting++
		}
	}
	if min := int(narrow.Seconds() * 0.4 / 2); waiting < min {
		t.Errorf("after %v at 0.6 of the bitrate only %d of %d stored fragments wait, want at least %d", narrow, waiting, len(stored), min)
	}
	t.Logf("%d of %d stored fragments waiting when the link widens", waiting, len(stored))
	if err := r.link.SetRate(0); err != nil {
		t.Fatal(err)
	}
	wide := time.Now()
	r.waitRecovered(wide, liveBound, 60*time.Second)
	r.hold(15 * time.Second)
	mark := time.Now()
	last, stored := r.drainAll(mark, 60*time.Second)
	r.judgeLive(wide.Add(10*time.Second), mark, liveBound, "live after widening")
	if !last.IsZero() {
		b := r.backlogBytes(stored, start, wide)
		r.res.DrainKBps = float64(b) / last.Sub(wide).Seconds() / 1000
	}
}

// 10 % of the packets are lost in each direction for a while.
func TestLoss(t *testing.T) {
	t.Parallel()
	r := newRig(t, "loss", 3, rigOpts{})
	defer r.finish()
	r.start()
	r.waitLive(30 * time.Second)
	if err := r.link.SetLoss(10); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	r.hold(pick(30*time.Second, 3*time.Minute))
	if err := r.link.SetLoss(0); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	r.waitRecovered(end, liveBound, 30*time.Second)
	r.hold(5 * time.Second)
	r.drainAll(time.Now(), 60*time.Second)
	r.judgeLive(from, end, liveBound, "live through 10 % loss")
}

// outage is the shape shared by the partition and black-hole scenarios:
// live first, then the fault for d, then recovery and a full drain.
func outage(t *testing.T, r *rig, d time.Duration, on, off func() error, wantDetect bool) {
	t.Helper()
	r.start()
	r.waitLive(30 * time.Second)
	w := r.watchConnection(d)
	if err := on(); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	r.hold(d)
	if err := off(); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	if det, ok := r.detected(w, from); !ok {
		if wantDetect {
			t.Errorf("the daemon kept its dead connection for the whole %v fault (want it dropped within %v)", d, detectBound)
		}
	} else {
		t.Logf("dead connection dropped %v after the fault began", det.Round(time.Millisecond))
		if wantDetect && det > detectBound {
			t.Errorf("dead connection dropped after %v, want within %v", det.Round(time.Millisecond), detectBound)
		}
	}
	// After the fault the endpoint may still hold the old connection until
	// its idle time-out (30 s), refusing a second one meanwhile.
	rec := r.waitRecovered(end, liveBound, kvslocal.DefaultIdleTimeout+60*time.Second)
	r.hold(10 * time.Second)
	mark := time.Now()
	last, stored := r.drainAll(mark, 90*time.Second)
	r.judgeLive(end.Add(rec+5*time.Second), mark.Add(-time.Second), liveBound, "live after the fault")
	if !last.IsZero() {
		b := r.backlogBytes(stored, from, end)
		r.res.DrainKBps = float64(b) / last.Sub(end).Seconds() / 1000
	}
}

// The camera's link goes down (sends fail, the open connection stalls).
func TestPartition(t *testing.T) {
	t.Parallel()
	r := newRig(t, "part", 4, rigOpts{})
	defer r.finish()
	outage(t, r, pick(30*time.Second, 2*time.Minute),
		func() error { return r.link.SetUp(false) }, func() error { return r.link.SetUp(true) }, true)
}

// Every packet vanishes, no RST and no ICMP: only the daemon's own
// liveness rule can notice.
func TestBlackHole(t *testing.T) {
	t.Parallel()
	r := newRig(t, "hole", 5, rigOpts{})
	defer r.finish()
	outage(t, r, pick(40*time.Second, 2*time.Minute),
		func() error { return r.link.BlackHole(true) }, func() error { return r.link.BlackHole(false) }, true)
}

// Connections are reset (RST to both ends) every few seconds, in the
// middle of whatever fragment is on the wire.
func TestResetsMidFragment(t *testing.T) {
	t.Parallel()
	r := newRig(t, "reset", 6, rigOpts{})
	defer r.finish()
	r.start()
	r.waitLive(30 * time.Second)
	from := time.Now()
	resets := 0
	for time.Since(from) < pick(30*time.Second, 2*time.Minute) {
		r.hold(4700 * time.Millisecond)
		if err := r.link.ResetAfter(r.port, 1); err != nil {
			t.Fatal(err)
		}
		r.hold(300 * time.Millisecond)
		if err := r.link.ResetAfter(r.port, 0); err != nil {
			t.Fatal(err)
		}
		resets++
	}
	end := time.Now()
	r.res.Notes += fmt.Sprintf("%d resets, %d connections", resets, r.kvs.Connections(streamName))
	r.waitRecovered(end, liveBound, 30*time.Second)
	r.hold(5 * time.Second)
	r.drainAll(time.Now(), 60*time.Second)
	r.judgeLive(from, end, liveBound, "live through the resets")
}

// The link flaps (2 s down, 3 s up) behind a WAN-like delay.
func TestLinkFlaps(t *testing.T) {
	t.Parallel()
	r := newRig(t, "flap", 7, rigOpts{proxyDelay: 30 * time.Millisecond, proxyJitter: 10 * time.Millisecond})
	defer r.finish()
	r.start()
	r.waitLive(30 * time.Second)
	from := time.Now()
	flaps := 0
	for time.Since(from) < pick(30*time.Second, 2*time.Minute) {
		if err := r.link.SetUp(false); err != nil {
			t.Fatal(err)
		}
		r.hold(2 * time.Second)
		if err := r.link.SetUp(true); err != nil {
			t.Fatal(err)
		}
		r.hold(3 * time.Second)
		flaps++
	}
	end := time.Now()
	r.res.Notes += fmt.Sprintf("%d flaps, %d connections", flaps, r.kvs.Connections(streamName))
	r.waitRecovered(end, liveBound, kvslocal.DefaultIdleTimeout+45*time.Second)
	r.hold(10 * time.Second)
	mark := time.Now()
	r.drainAll(mark, 90*time.Second)
	r.judgeLive(end.Add(time.Duration(r.res.RecoverS*float64(time.Second))+5*time.Second), mark, liveBound, "live after the flaps")
}

// One fragment is refused (5000) on every attempt, for ever, while live
// video keeps coming behind it. It can never be stored, so it must be
// set aside: tried a bounded number of times, then kept in the ring
// (unacknowledged, in the set-aside list that survives a restart) and
// reported in status, while live video goes on and everything else is
// stored exactly once. It counts as set aside, not lost. (Its later
// low-priority retries, minutes apart, are the sender tests' part.)
func TestPoisonFragment(t *testing.T) {
	t.Parallel()
	r := newRig(t, "poison", 8, rigOpts{})
	defer r.finish()
	r.start()
	r.waitLive(30 * time.Second)
	if err := r.kvs.PoisonFragment(streamName, kvslocal.ErrInternal, 0); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	window := pick(40*time.Second, 2*time.Minute)
	r.hold(window)
	end := time.Now()
	p := r.kvs.Poisoned(streamName)
	if len(p) != 1 {
		t.Fatalf("%d poisoned fragments bound, want 1", len(p))
	}
	var tc int64
	var n int
	for tc, n = range p {
	}
	if n < 2 || n > sender.DefaultMaxAttempts {
		t.Errorf("poisoned fragment %d was tried %d times; want it retried after a refusal, at most %d times before it is set aside", tc, n, sender.DefaultMaxAttempts)
	}
	up := r.status().Streams[0].Uploader
	if up.SetAside != 1 || up.SetAsideTotal != 1 {
		t.Errorf("status reports %d fragments set aside (%d in total), want the poisoned one", up.SetAside, up.SetAsideTotal)
	}
	r.setAside = map[int64]bool{tc: true}
	r.recovered(from.Add(2*time.Second), liveBound)
	r.drainAll(end, 120*time.Second)
	r.judgeLive(from.Add(5*time.Second), end, liveBound, "live behind the poisoned fragment")
	r.checkKeptAside(tc)
	r.res.Notes += fmt.Sprintf("1 set aside after %d refusals, kept in the ring", n)
}

// The open connection keeps taking bytes but never acknowledges again,
// with live data flowing: the daemon must reconnect within about 20 s.
func TestStalledAcks(t *testing.T) {
	t.Parallel()
	r := newRig(t, "stall", 9, rigOpts{})
	defer r.finish()
	r.start()
	r.waitLive(30 * time.Second)
	window := pick(50*time.Second, 2*time.Minute)
	w := r.watchConnection(window)
	if err := r.kvs.StallOpenAcks(streamName); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	det, ok := r.detected(w, from)
	switch {
	case !ok:
		t.Errorf("the daemon kept the connection that never acknowledges for %v (want a reconnect within %v)", window, detectBound)
	case det > detectBound:
		t.Errorf("the connection that never acknowledges was dropped after %v, want within %v", det.Round(time.Millisecond), detectBound)
	default:
		t.Logf("stalled connection dropped after %v", det.Round(time.Millisecond))
	}
	if rest := window - time.Since(from); rest > 0 {
		r.hold(rest)
	}
	end := time.Now()
	r.recovered(from, liveBound)
	r.drainAll(end, 60*time.Second)
	r.judgeLive(from.Add(detectBound+5*time.Second), end, liveBound, "live after the stall")
}

// The endpoint's clock jumps 10 minutes ahead of the daemon's (a Pi
// without RTC): the next connection gets 403 "Signature expired", and the
// daemon must learn the offset from the Date header and carry on.
func TestClockSkew403(t *testing.T) {
	t.Parallel()
	r := newRig(t, "skew", 10, rigOpts{})
	defer r.finish()
	r.start()
	r.waitLive(30 * time.Second)
	r.skew = 10 * time.Minute
	r.kvs.SetClockOffset(r.skew)
	// Connections are only signed when they open: end the current one.
	if err := r.kvs.DropConnection(streamName, 0); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	r.waitKVS(30*time.Second, "the old connection to end", func(st kvslocal.State) bool { return !st.Connected })
	rec := r.waitRecovered(from, liveBound, 45*time.Second)
	if rec > 20*time.Second {
		t.Errorf("uploads resumed %v after the endpoint's clock moved 10 min, want within 20 s", rec.Round(time.Millisecond))
	}
	r.hold(10 * time.Second)
	mark := time.Now()
	r.drainAll(mark, 60*time.Second)
	r.judgeLive(from.Add(rec+2*time.Second), mark, liveBound, "live after learning the offset")
}

// The daemon recorded while its clock was 40 s ahead; the clock was then
// stepped back and the daemon restarted. The ring holds fragments stamped
// after the new live ones (refused as in the future for a while, 4007);
// live video must not wait for them, and they must arrive once the
// endpoint's clock reaches them.
func TestClockStepBackAcrossRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t, "step", 11, rigOpts{})
	defer r.finish()
	// First run: the daemon makes its ring, as on any device.
	r.start()
	r.waitLive(30 * time.Second)
	r.stop()
	// What it would have recorded with the clock 40 s ahead.
	ahead := 40 * time.Second
	rg, err := ring.Open(filepath.Join(r.state, streamName), ring.Options{Capacity: ringSize})
	if err != nil {
		t.Fatal(err)
	}
	future := clipFragments(t, clip, 2, time.Now().Add(ahead))
	for i := range future {
		if _, err := rg.Append(&future[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := rg.Close(); err != nil {
		t.Fatal(err)
	}
	// Second run, clock stepped back to the right time.
	r.start()
	restart := time.Now()
	window := pick(70*time.Second, 3*time.Minute)
	r.hold(window)
	end := time.Now()
	r.recovered(restart, liveBound)
	r.drainAll(end, 60*time.Second)
	r.judgeLive(restart.Add(5*time.Second), end, liveBound, "live after the step back")
	r.res.Notes += fmt.Sprintf("%d fragments stamped %v ahead", len(future), ahead)
}
