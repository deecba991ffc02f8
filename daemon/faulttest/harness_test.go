//go:build faults

package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/daemon/stream"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/netfault"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
	"github.com/kvscamd/kvscamd/media"
)

const (
	streamName = "cam-fault"
	ringSize   = 64 << 20
	// maxLiveLag is the sender's default max_live_lag; liveMargin what a
	// loaded 2-core machine may add to it (a fragment's own length, the
	// persist delay, scheduling).
	maxLiveLag = 10 * time.Second
	liveMargin = 4 * time.Second
	// detectBound: a dead or black-holed connection must be noticed
	// within about 20 s (the sender's ACK-liveness rule), plus margin.
	detectBound = 25 * time.Second
)

var (
	full      = os.Getenv("FAULTS_FULL") == "1"
	kvscamd   string // the daemon binary
	clip      = testclips.Get("baseline-repeat.h264")
	resultsMu sync.Mutex
	results   []Result
)

// pick returns the short (CI) or the full duration.
func pick(short, long time.Duration) time.Duration {
	if full {
		return long
	}
	return short
}

func TestMain(m *testing.M) {
	code := func() int {
		if err := netfault.Check(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		kvscamd = os.Getenv("KVSCAMD_BIN")
		if kvscamd == "" {
			dir, err := os.MkdirTemp("", "kvscamd-faults-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			kvscamd = filepath.Join(dir, "kvscamd")
			gobin, err := exec.LookPath("go")
			if err != nil {
				fmt.Fprintln(os.Stderr, "the fault tests build kvscamd with go, which is not on PATH (or set KVSCAMD_BIN)")
				return 1
			}
			if out, err := exec.Command(gobin, "build", "-o", kvscamd, "..").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building kvscamd: %v\n%s", err, out)
				return 1
			}
		}
		code := m.Run()
		if err := writeReport(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		return code
	}()
	os.Exit(code)
}

// Result is one scenario's numbers, as reported.
type Result struct {
	Scenario string `json:"scenario"`
	Passed   bool   `json:"passed"`
	// DetectS: fault start to the daemon dropping the connection it had
	// (-1: not applicable). RecoverS: fault end to the first fragment
	// made after it being ingested with a lag within bounds.
	DetectS  float64 `json:"detect_s"`
	RecoverS float64 `json:"recover_s"`
	// LiveLagP50S/P99S over the live fragments the scenario judges.
	LiveLagP50S float64 `json:"live_lag_p50_s"`
	LiveLagP99S float64 `json:"live_lag_p99_s"`
	// DrainFraction: backlog bytes over drain time, divided by the spare
	// capacity (link rate minus video rate); -1 when the link has no set
	// rate. DrainKBps is the drain rate itself.
	DrainFraction float64 `json:"drain_fraction"`
	DrainKBps     float64 `json:"drain_kbps"`
	Fragments     int     `json:"fragments"`
	Lost          int     `json:"lost"`
	Duplicated    int     `json:"duplicated"`
	Notes         string  `json:"notes,omitempty"`
}

func writeReport() error {
	dir := os.Getenv("FAULTS_REPORT")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "kvscamd-faults")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	sort.Slice(results, func(i, j int) bool { return results[i].Scenario < results[j].Scenario })
	b, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	variant := "short (CI)"
	if full {
		variant = "full"
	}
	fmt.Fprintf(&md, "# Fault scenarios, %s variant\n\n", variant)
	md.WriteString("| scenario | result | detect s | recover s | live lag p50 s | p99 s | drain / spare | drain KB/s | fragments | lost | duplicated | notes |\n")
	md.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	f := func(v float64) string {
		if v < 0 || math.IsNaN(v) {
			return "–"
		}
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	for _, r := range results {
		res := "FAIL"
		if r.Passed {
			res = "pass"
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %s |\n", r.Scenario, res, f(r.DetectS), f(r.RecoverS),
			f(r.LiveLagP50S), f(r.LiveLagP99S), f(r.DrainFraction), f(r.DrainKBps), r.Fragments, r.Lost, r.Duplicated, r.Notes)
	}
	fmt.Fprintf(os.Stderr, "fault summary in %s\n", dir)
	return os.WriteFile(filepath.Join(dir, "summary.md"), md.Bytes(), 0o644)
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail returns the last n lines.
func (s *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rig is one scenario's world: a link, the endpoint on its host side, and
// the daemon in its namespace.
type rig struct {
	t      *testing.T
	name   string
	link   *netfault.Link
	kvs    *kvslocal.Server
	kvsLog *syncBuffer
	port   int // where the daemon connects (the endpoint, or a proxy)
	kport  int // the endpoint's own port
	proxy  *netfault.Proxy

	cfgPath, state, caFile string
	daemon                 *exec.Cmd
	daemonOut              *syncBuffer
	exited                 chan error
	stopped                time.Time // when stop last ended the daemon

	// skew is how far the endpoint's clock was moved (SetClockOffset):
	// ingestion times carry it, producer times do not.
	skew time.Duration
	// setAside holds the timecodes of fragments the endpoint refuses for
	// ever: the daemon must keep them, set aside, so drainAll neither
	// waits for them nor counts them as lost.
	setAside map[int64]bool

	res Result
}

type rigOpts struct {
	kvs func(*kvslocal.Options)
	// proxyDelay puts the delaying proxy between daemon and endpoint.
	proxyDelay, proxyJitter time.Duration
}

// newRig builds the link and the endpoint; the daemon starts with start.
func newRig(t *testing.T, name string, subnet int, o rigOpts) *rig {
	t.Helper()
	r := &rig{t: t, name: name, res: Result{Scenario: name, DetectS: -1, RecoverS: -1, DrainFraction: -1, DrainKBps: -1, LiveLagP50S: -1, LiveLagP99S: -1}}
	r.link = netfault.New(t, name, subnet)
	r.kvsLog = &syncBuffer{}
	ko := kvslocal.Options{
		Addr:   r.link.HostIP + ":0",
		TLS:    true,
		Region: "us-west-2",
		Logger: slog.New(slog.NewTextHandler(r.kvsLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.kvs != nil {
		o.kvs(&ko)
	}
	r.kvs = kvslocal.Start(t, ko)
	if _, err := r.kvs.CreateStream(streamName, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	r.kport = portOf(t, r.kvs.URL)
	r.port = r.kport
	if o.proxyDelay > 0 {
		p, err := netfault.StartProxy(r.link.HostIP+":0", fmt.Sprintf("%s:%d", r.link.HostIP, r.kport))
		if err != nil {
			t.Fatal(err)
		}
		p.SetDelay(o.proxyDelay, o.proxyJitter)
		t.Cleanup(func() { p.Close() })
		r.proxy = p
		r.port = portOf(t, "https://"+p.Addr)
	}
	dir := t.TempDir()
	r.caFile = filepath.Join(dir, "kvs-ca.pem")
	if err := os.WriteFile(r.caFile, r.kvs.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	r.state = filepath.Join(dir, "state")
	r.cfgPath = filepath.Join(dir, "kvscamd.toml")
	c := r.kvs.IssueCredentials(6 * time.Hour)
	cfg := fmt.Sprintf(`thing_name = "cam-fault"
region = "us-west-2"
state_dir = %q
clock_sync = "trust"
log_level = "debug"

[credentials]
source = "static"
access_key_id = %q
secret_access_key = %q
session_token = %q

[kvs]
endpoint = "https://%s:%d"

[[stream]]
name = %q
driver = "file"
path = %q
loop = true
realtime = true
fps = %d
keyframe_interval = "1s"
ring_size = "64MiB"
`, r.state, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, r.link.HostIP, r.port, streamName, clip.Path(), clip.FPS)
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() || os.Getenv("FAULTS_DEBUG") != "" {
			t.Logf("daemon output (tail):\n%s", r.daemonOut.tail(400))
			t.Logf("kvslocal log (tail):\n%s", r.kvsLog.tail(40))
		}
		if dir := os.Getenv("FAULTS_REPORT"); dir != "" && (t.Failed() || os.Getenv("FAULTS_DEBUG") != "") {
			// Whole logs beside the summary, for reading a failure offline.
			_ = os.MkdirAll(dir, 0o755)
			for suffix, b := range map[string]*syncBuffer{"daemon.log": r.daemonOut, "kvslocal.log": r.kvsLog} {
				if err := os.WriteFile(filepath.Join(dir, r.name+"."+suffix), []byte(b.String()), 0o644); err != nil {
					t.Logf("keep %s log: %v", suffix, err)
				}
			}
		}
	})
	r.daemonOut = &syncBuffer{}
	return r
}

func portOf(t *testing.T, url string) int {
	i := strings.LastIndexByte(url, ':')
	p, err := strconv.Atoi(url[i+1:])
	if err != nil {
		t.Fatalf("port of %q: %v", url, err)
	}
	return p
}

// start runs the daemon in the namespace, trusting the endpoint's CA.
func (r *rig) start() {
	r.t.Helper()
	cmd := r.link.Command(kvscamd, "run", "-config", r.cfgPath, "-socket", filepath.Join(filepath.Dir(r.cfgPath), "kvscamd.sock"))
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+r.caFile)
	cmd.Stdout, cmd.Stderr = r.daemonOut, r.daemonOut
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.daemon = cmd
	r.exited = make(chan error, 1)
	go func() { r.exited <- cmd.Wait() }()
}

// stop ends the daemon with SIGTERM (SIGKILL after 30 s).
func (r *rig) stop() {
	if r.daemon == nil {
		return
	}
	_ = r.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		_ = r.daemon.Process.Kill()
		<-r.exited
		r.t.Errorf("daemon did not stop within 30 s of SIGTERM")
	}
	r.daemon = nil
	r.stopped = time.Now()
}

// waitKVS waits for cond on the endpoint's state, failing the test with
// what after limit.
func (r *rig) waitKVS(limit time.Duration, what string, cond func(kvslocal.State) bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := r.kvs.Wait(ctx, streamName, cond); err != nil {
		r.t.Fatalf("%s: not within %v: %v", what, limit, err)
	}
}

// waitLive waits until the daemon uploads: a fragment persisted.
func (r *rig) waitLive(limit time.Duration) {
	r.t.Helper()
	r.waitKVS(limit, "first fragment persisted", func(st kvslocal.State) bool {
		for _, f := range st.Fragments {
			if f.Persisted {
				return true
			}
		}
		return false
	})
}

// connWatch records when the daemon's PutMedia connection open at its
// start stops being established (the daemon dropped it).
type connWatch struct {
	done chan struct{}
	at   time.Time
	ok   bool
}

// watchConnection starts watching the PutMedia connection open now; it
// polls the camera's socket table every 100 ms, a real condition with a
// deadline. Only that connection counts: the daemon also keeps a
// control-plane connection alive to the same endpoint, and whether that
// one happens to be replaced says nothing about liveness.
func (r *rig) watchConnection(limit time.Duration) *connWatch {
	r.t.Helper()
	if r.proxy != nil {
		r.t.Fatal("watchConnection: behind the proxy the endpoint sees the proxy's address, not the daemon's")
	}
	r.waitKVS(30*time.Second, "a PutMedia connection open", func(st kvslocal.State) bool { return st.Connected })
	peer, ok := r.kvs.PutMediaPeer(streamName)
	if !ok {
		r.t.Fatal("watchConnection: the PutMedia connection ended before it could be watched")
	}
	port := portOf(r.t, "tcp://"+peer.String())
	w := &connWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			now, err := r.link.Established(r.port)
			if err != nil {
				return
			}
			if !now[port] {
				w.at, w.ok = time.Now(), true
				return
			}
			time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
		}
	}()
	return w
}

// detected waits for the watch and records the detect time from since.
func (r *rig) detected(w *connWatch, since time.Time) (time.Duration, bool) {
	<-w.done
	if !w.ok {
		return 0, false
	}
	d := w.at.Sub(since)
	r.res.DetectS = d.Seconds()
	return d, true
}

// ringFragment is what the daemon stored.
type ringFragment struct {
	tc    int64
	dur   time.Duration
	bytes int
}

func (r *rig) ringFragments() []ringFragment {
	r.t.Helper()
	rg, err := ring.Open(filepath.Join(r.state, streamName), ring.Options{Capacity: ringSize, ReadOnly: true})
	if err != nil {
		r.t.Fatalf("open ring: %v", err)
	}
	defer rg.Close()
	var out []ringFragment
	if err := rg.Range(time.Time{}, time.Time{}, func(_ ring.ID, f fragmenter.Fragment) error {
		out = append(out, ringFragment{tc: f.Timecode, dur: f.Duration, bytes: len(f.Cluster)})
		return nil
	}); err != nil {
		r.t.Fatalf("read ring: %v", err)
	}
	return out
}

// persistedCount maps timecode to how many times it was persisted.
func persistedCount(frags []kvslocal.Fragment) map[int64]int {
	m := map[int64]int{}
	for _, f := range frags {
		if f.Persisted {
			m[f.Timecode]++
		}
	}
	return m
}

// ackDiedInFlight counts the fragments persisted twice for the one reason
// a producer cannot avoid: the endpoint wrote the PERSISTED and then the
// connection died (a reset discards what the camera had not read yet), so
// the daemon never learnt it and sent the fragment again first thing on
// the next connection. The first copy's PERSISTED must be the last
// acknowledgement of its connection, and the second copy the first
// fragment of the connection right after it; anything else is a real
// duplicate.
func ackDiedInFlight(frags []kvslocal.Fragment, acks []kvslocal.Ack) int {
	lastAck := map[int]kvslocal.Ack{}
	for _, a := range acks {
		if l, ok := lastAck[a.Connection]; !ok || !a.At.Before(l.At) {
			lastAck[a.Connection] = a
		}
	}
	firstOf := map[int]kvslocal.Fragment{}
	for _, f := range frags {
		if g, ok := firstOf[f.Connection]; !ok || f.ReceivedAt.Before(g.ReceivedAt) {
			firstOf[f.Connection] = f
		}
	}
	byTC := map[int64][]kvslocal.Fragment{}
	for _, f := range frags {
		if f.Persisted {
			byTC[f.Timecode] = append(byTC[f.Timecode], f)
		}
	}
	n := 0
	for _, copies := range byTC {
		if len(copies) != 2 {
			continue
		}
		a, b := copies[0], copies[1]
		if b.Connection < a.Connection {
			a, b = b, a
		}
		l := lastAck[a.Connection]
		if l.EventType == kvslocal.EventPersisted && l.FragmentNumber == a.FragmentNumber &&
			b.Connection == a.Connection+1 && firstOf[b.Connection].FragmentNumber == b.FragmentNumber {
			n++
		}
	}
	return n
}

// drainAll waits until every fragment the daemon stored that ended by
// mark is persisted, then stops the daemon and counts lost and duplicated
// fragments. It returns when the last of those was persisted.
func (r *rig) drainAll(mark time.Time, limit time.Duration) (time.Time, []ringFragment) {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	var lastPersist time.Time
	for {
		stored := r.ringFragments()
		have := persistedCount(r.kvs.Fragments(streamName))
		missing := 0
		for _, f := range stored {
			if time.UnixMilli(f.tc).Add(f.dur).After(mark) || r.setAside[f.tc] {
				continue
			}
			if have[f.tc] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		// The ring is read from disk: poll it, with the deadline above.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = r.kvs.Wait(ctx, streamName, func(kvslocal.State) bool { return false })
		cancel()
	}
	r.stop()
	stored := r.ringFragments()
	frags := r.kvs.Fragments(streamName)
	have := persistedCount(frags)
	var lost []int64
	n := 0
	for _, f := range stored {
		if time.UnixMilli(f.tc).Add(f.dur).After(mark) {
			continue
		}
		n++
		if r.setAside[f.tc] {
			if have[f.tc] > 0 {
				r.t.Errorf("fragment %d persisted although the endpoint refuses it on every attempt", f.tc)
			}
			continue
		}
		if have[f.tc] == 0 {
			lost = append(lost, f.tc)
		}
	}
	for _, f := range frags {
		if f.Persisted && time.UnixMilli(f.ProducerTime).Before(mark) && f.PersistedAt.After(lastPersist) {
			lastPersist = f.PersistedAt
		}
	}
	dups := 0
	for _, c := range have {
		dups += c - 1
	}
	inFlight := ackDiedInFlight(frags, r.kvs.Acks(streamName))
	r.res.Fragments, r.res.Lost, r.res.Duplicated = n, len(lost), dups
	if len(lost) > 0 {
		// Say which of them the endpoint refused as too short: those
		// are fragments the daemon cut short (a flush at stop), not
		// upload failures.
		short := map[int64]bool{}
		for _, a := range r.kvs.Acks(streamName) {
			if a.EventType == kvslocal.EventError && a.ErrorCode == kvslocal.ErrorCodeMinFragmentDuration {
				short[a.FragmentTimecode] = true
			}
		}
		var tooShort []int64
		for _, tc := range lost {
			if short[tc] {
				tooShort = append(tooShort, tc)
			}
		}
		r.t.Errorf("%d of %d stored fragments made before the end mark were never persisted (timecodes %v); %d of them refused as shorter than the 1 s minimum %v",
			len(lost), n, first(lost, 10), len(tooShort), tooShort)
		if len(tooShort) > 0 {
			r.res.Notes += fmt.Sprintf("%d lost as shorter than 1 s; ", len(tooShort))
		}
	}
	if inFlight > 0 {
		r.res.Notes += fmt.Sprintf("%d sent again: the connection died with its PERSISTED in flight; ", inFlight)
	}
	if dups > inFlight {
		r.t.Errorf("%d fragments persisted more than once, %d of them explained by a PERSISTED lost with its connection", dups, inFlight)
	}
	if n == 0 {
		r.t.Errorf("the daemon stored no fragment before the end mark")
	}
	return lastPersist, stored
}

func first[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// lags returns the live lag of each fragment made in [from, to), in
// production order, as a LIVE viewer saw it.
func (r *rig) lags(from, to time.Time) []time.Duration {
	var out []time.Duration
	view := r.kvs.LiveView(streamName)
	seen := map[time.Time]bool{}
	for _, f := range view {
		if f.Producer.Before(from) || !f.Producer.Before(to) || seen[f.Producer] {
			continue
		}
		seen[f.Producer] = true // the first ingestion is the one a viewer saw
		out = append(out, f.Lag()-r.skew)
	}
	return out
}

// judgeLive records p50/p99 of the lags of the fragments made in
// [from, to) and fails when any exceeds bound. Call it after drainAll, so
// that fragments ingested late count with their lag. A fragment the
// daemon stored but never delivered counts with its lag so far, up to
// the daemon's stop: leaving live video out must not improve the figures.
func (r *rig) judgeLive(from, to time.Time, bound time.Duration, what string) {
	r.t.Helper()
	lags := r.lags(from, to)
	if !r.stopped.IsZero() {
		seen := map[int64]bool{}
		for _, f := range r.kvs.LiveView(streamName) {
			seen[f.Producer.UnixMilli()] = true
		}
		missing := 0
		for _, f := range r.ringFragments() {
			start := time.UnixMilli(f.tc)
			if start.Before(from) || !start.Before(to) || seen[f.tc] || r.setAside[f.tc] {
				continue
			}
			missing++
			lags = append(lags, r.stopped.Sub(start.Add(f.dur)))
		}
		if missing > 0 {
			r.t.Logf("%s: %d fragments made in the window never reached the endpoint; they count with their lag at the stop", what, missing)
		}
	}
	if len(lags) == 0 {
		r.t.Errorf("%s: no fragment made between %s and %s reached the endpoint", what, from.Format("15:04:05.000"), to.Format("15:04:05.000"))
		return
	}
	s := slices.Clone(lags)
	slices.Sort(s)
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)] }
	r.res.LiveLagP50S, r.res.LiveLagP99S = p(0.50).Seconds(), p(0.99).Seconds()
	r.t.Logf("%s: live lag p50 %v p99 %v max %v over %d fragments", what, p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
	if worst := s[len(s)-1]; worst > bound {
		r.t.Errorf("%s: live lag reached %v, over the %v bound (p50 %v, p99 %v)", what, worst.Round(time.Millisecond), bound, p(0.5), p(0.99))
	}
}

// recovered records the time from since to the first fragment made after
// since that was ingested with a lag within bound.
func (r *rig) recovered(since time.Time, bound time.Duration) (time.Duration, bool) {
	for _, f := range r.kvs.LiveView(streamName) {
		if f.Producer.Before(since) || f.Lag()-r.skew > bound {
			continue
		}
		d := f.Ingested.Add(-r.skew).Sub(since)
		r.res.RecoverS = d.Seconds()
		return d, true
	}
	return 0, false
}

// waitRecovered waits until a fragment made after since is ingested with
// a lag within bound, and records the recover time.
func (r *rig) waitRecovered(since time.Time, bound, limit time.Duration) time.Duration {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_ = r.kvs.Wait(ctx, streamName, func(st kvslocal.State) bool {
		for _, f := range st.Fragments {
			if !f.ReceivedAt.IsZero() && !time.UnixMilli(f.ProducerTime).Before(since) &&
				f.ReceivedAt.Add(-r.skew).Sub(time.UnixMilli(f.ProducerTime).Add(time.Duration(f.DurationMs)*time.Millisecond)) <= bound {
				return true
			}
		}
		return false
	})
	d, ok := r.recovered(since, bound)
	if !ok {
		r.t.Errorf("no live fragment made after the fault ended was ingested within %v of real time in %v", bound, limit)
		return 0
	}
	r.t.Logf("recovered %v after the fault ended", d.Round(time.Millisecond))
	return d
}

// videoRate is the clip's bitrate in bits per second.
func videoRate(t *testing.T) float64 {
	st, err := os.Stat(clip.Path())
	if err != nil {
		t.Fatal(err)
	}
	secs := float64(clip.Frames) / float64(clip.FPS)
	return float64(st.Size()) * 8 / secs
}

// finish records the result; call it deferred first in every scenario.
func (r *rig) finish() {
	r.res.Passed = !r.t.Failed()
	r.t.Logf("result: %+v", r.res)
	resultsMu.Lock()
	results = append(results, r.res)
	resultsMu.Unlock()
}

// hold lets the scenario run for d (its fault's duration, not a wait for
// an event), failing at once if the daemon exits meanwhile.
func (r *rig) hold(d time.Duration) {
	r.t.Helper()
	select {
	case <-time.After(d):
	case err := <-r.exited:
		r.daemon = nil
		r.t.Fatalf("daemon exited during the scenario: %v", err)
	}
}

// status asks the running daemon for its status over its socket.
func (r *rig) status() status.Status {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := status.NewClient(filepath.Join(filepath.Dir(r.cfgPath), "kvscamd.sock")).Status(ctx)
	if err != nil {
		r.t.Fatalf("daemon status: %v", err)
	}
	if len(st.Streams) != 1 {
		r.t.Fatalf("daemon status has %d streams, want 1", len(st.Streams))
	}
	return st
}

// checkKeptAside checks, with the daemon stopped, that the fragment with
// timecode tc is still in the ring, unacknowledged, and in the set-aside
// list the next run reads.
func (r *rig) checkKeptAside(tc int64) {
	r.t.Helper()
	dir := filepath.Join(r.state, streamName)
	rg, err := ring.Open(dir, ring.Options{Capacity: ringSize, ReadOnly: true})
	if err != nil {
		r.t.Fatalf("open ring: %v", err)
	}
	defer rg.Close()
	found := false
	if err := rg.Range(time.Time{}, time.Time{}, func(id ring.ID, f fragmenter.Fragment) error {
		if f.Timecode == tc {
			found = true
			if rg.Acked(id) {
				r.t.Errorf("set-aside fragment %d (ring id %d) is acknowledged in the ring: it would never be retried", tc, id)
			}
		}
		return nil
	}); err != nil {
		r.t.Fatalf("read ring: %v", err)
	}
	if !found {
		r.t.Errorf("set-aside fragment %d is no longer in the ring", tc)
	}
	b, err := os.ReadFile(filepath.Join(dir, stream.SetAsideFileName))
	if err != nil {
		r.t.Errorf("set-aside list: %v", err)
	} else if !bytes.Contains(b, []byte(strconv.FormatInt(tc, 10))) {
		r.t.Errorf("set-aside list does not name fragment %d:\n%s", tc, b)
	}
}

// backlogBytes sums the stored fragments made in [from, mark] that the
// endpoint persisted: a drain rate counts only what was drained.
func (r *rig) backlogBytes(stored []ringFragment, from, mark time.Time) int64 {
	have := persistedCount(r.kvs.Fragments(streamName))
	var n int64
	for _, f := range stored {
		start := time.UnixMilli(f.tc)
		if have[f.tc] > 0 && !start.Before(from) && !start.Add(f.dur).After(mark) {
			n += int64(f.bytes)
		}
	}
	return n
}

// clipFragments cuts loops replays of c into 1 s fragments with the
// daemon's fragmenter, frame k stamped start + k/fps.
func clipFragments(t *testing.T, c testclips.Clip, loops int, start time.Time) []fragmenter.Fragment {
	t.Helper()
	data := c.Read(t)
	fr := fragmenter.New(fragmenter.Config{FragmentDuration: time.Second})
	var out []fragmenter.Fragment
	k := 0
	for range loops {
		rd := h264.NewReader(bytes.NewReader(data))
		for {
			au, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("read %s: %v", c.Name, err)
			}
			nalus := make([][]byte, len(au))
			for i, n := range au {
				nalus[i] = slices.Clone(n)
			}
			f, ok := fr.Push(media.Frame{NALUs: nalus, Time: start.Add(time.Duration(k) * time.Second / time.Duration(c.FPS)), Key: h264.IsIDR(nalus), Seq: uint64(k)})
			k++
			if ok {
				f.Cluster = slices.Clone(f.Cluster)
				out = append(out, f)
			}
		}
	}
	// The open fragment is left out: cut short, it would be under the
	// service's minimum duration.
	return out
}
