package sender

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/kvslocal"
	"github.com/kvscamd/kvscamd/media"
)

const testStream = "cam-test"

// testWait bounds every wait for a condition in these tests.
const testWait = 60 * time.Second

// clipFragments cuts an Annex-B test clip (replayed loops times, frame k
// at start + k/30 s) into fragments with the real fragmenter.
func clipFragments(t testing.TB, clip string, loops int, start time.Time) []fragmenter.Fragment {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", clip))
	if err != nil {
		t.Fatalf("test clip: %v", err)
	}
	fr := fragmenter.New(fragmenter.Config{FragmentDuration: time.Second})
	var out []fragmenter.Fragment
	keep := func(f fragmenter.Fragment) {
		f.Cluster = append([]byte(nil), f.Cluster...)
		out = append(out, f)
	}
	k := 0
	for range loops {
		r := h264.NewReader(bytesReader(data))
		for {
			au, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("read %s: %v", clip, err)
			}
			nalus := make([][]byte, len(au))
			for i, n := range au {
				nalus[i] = append([]byte(nil), n...)
			}
			frame := media.Frame{
				NALUs: nalus,
				Time:  start.Add(time.Duration(k) * time.Second / 30),
				Key:   h264.IsIDR(nalus),
				Seq:   uint64(k),
			}
			k++
			if f, ok := fr.Push(frame); ok {
				keep(f)
			}
		}
	}
	if f, ok := fr.Flush(); ok {
		keep(f)
	}
	return out
}

type byteReader struct {
	b []byte
}

func bytesReader(b []byte) *byteReader { return &byteReader{b} }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// spyStore wraps the real ring and checks the sender's promise that a
// fragment is never sent after the ring was told it is stored.
type spyStore struct {
	*ring.Ring
	mu    sync.Mutex
	acked map[ring.ID]bool
}

func (s *spyStore) Ack(id ring.ID) error {
	s.mu.Lock()
	s.acked[id] = true
	s.mu.Unlock()
	return s.Ring.Ack(id)
}

func (s *spyStore) wasAcked(id ring.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[id]
}

// harness is a ring in a temp dir, a local KVS endpoint and a sender.
type harness struct {
	t      *testing.T
	kvs    *kvslocal.Server
	ring   *ring.Ring
	store  *spyStore
	s      *Sender
	cfg    Config
	frags  map[int64]fragmenter.Fragment // appended, by timecode
	order  []int64
	ids    map[int64]ring.ID
	cancel context.CancelFunc
	done   chan error

	mu        sync.Mutex
	resentAck []ring.ID // fragments sent after being acknowledged
	sentCount map[ring.ID]int
	retention time.Duration
	noStream  bool
	// quickCheck skips the external MKV tools: the SHA-256 comparison
	// still proves every cluster arrived byte for byte. Used where many
	// cases differ only in an injected error code; the tools run in the
	// other tests.
	quickCheck   bool
	kvsOptions   kvslocal.Options
	ringCapacity int64
}

type harnessOpt func(*harness)

func withConfig(f func(*Config)) harnessOpt { return func(h *harness) { f(&h.cfg) } }
func withRetention(d time.Duration) harnessOpt {
	return func(h *harness) { h.retention = d }
}
func quickCheck() harnessOpt    { return func(h *harness) { h.quickCheck = true } }
func withoutStream() harnessOpt { return func(h *harness) { h.noStream = true } }
func withRingCapacity(n int64) harnessOpt {
	return func(h *harness) { h.ringCapacity = n }
}
func withKVS(f func(*kvslocal.Options)) harnessOpt {
	return func(h *harness) { f(&h.kvsOptions) }
}

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{
		t:         t,
		frags:     map[int64]fragmenter.Fragment{},
		ids:       map[int64]ring.ID{},
		sentCount: map[ring.ID]int{},
		retention: 24 * time.Hour,
		done:      make(chan error, 1),
	}
	h.kvsOptions = kvslocal.Options{Region: "eu-west-1"}
	if testing.Verbose() {
		h.kvsOptions.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	h.cfg = Config{
		Stream: testStream,
		Region: "eu-west-1",
		// Test-sized time-outs; the production defaults are tens of seconds.
		AckTimeout:      2 * time.Second,
		PersistTimeout:  2 * time.Second,
		HeaderTimeout:   2 * time.Second,
		StallTimeout:    3 * time.Second,
		DrainTimeout:    3 * time.Second,
		IdleClose:       5 * time.Second,
		OperatorBackoff: 300 * time.Millisecond,
		Backoff:         backoff.New(20*time.Millisecond, 200*time.Millisecond),
	}
	for _, o := range opts {
		o(h)
	}
	h.kvs = kvslocal.Start(t, h.kvsOptions)
	if !h.noStream {
		if _, err := h.kvs.CreateStream(testStream, h.retention); err != nil {
			t.Fatal(err)
		}
	}
	if h.ringCapacity == 0 {
		h.ringCapacity = 64 << 20
	}
	r, err := ring.Open(t.TempDir(), ring.Options{Capacity: h.ringCapacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	h.ring = r
	h.store = &spyStore{Ring: r, acked: map[ring.ID]bool{}}
	h.cfg.Ring = h.store
	h.cfg.ControlEndpoint = h.kvs.URL
	if h.cfg.Credentials == nil {
		h.cfg.Credentials = static(h.kvs.Credentials())
	}
	if testing.Verbose() {
		h.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return h
}

// start creates and runs the sender.
func (h *harness) start() {
	h.t.Helper()
	cfg := h.cfg
	cfg.OnSend = func(id ring.ID) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.sentCount[id]++
		if h.store.wasAcked(id) {
			h.resentAck = append(h.resentAck, id)
		}
	}
	s, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- s.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop cancels Run and checks it returned nil.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v after cancellation, want nil", err)
		}
	case <-time.After(testWait):
		h.t.Errorf("Run did not return within %v of cancellation", testWait)
	}
}

func (h *harness) append(frags ...fragmenter.Fragment) {
	h.t.Helper()
	for i := range frags {
		id, err := h.ring.Append(&frags[i])
		if err != nil {
			h.t.Fatal(err)
		}
		h.frags[frags[i].Timecode] = frags[i]
		h.order = append(h.order, frags[i].Timecode)
		h.ids[frags[i].Timecode] = id
	}
}

// waitFor polls cond until it holds, failing the test after testWait.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %v waiting for %s; sender stats %+v", testWait, what, h.s.Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// waitAllAcked waits until the ring has nothing unacknowledged.
func (h *harness) waitAllAcked() {
	h.t.Helper()
	h.waitFor("every fragment acknowledged in the ring", func() bool {
		_, ok := h.ring.FirstUnacked()
		return !ok
	})
}

// check verifies what the endpoint stored against what was appended:
// every fragment not in skipped arrived intact (timecode, frame count,
// SHA-256 of the cluster), skipped ones never arrived, no fragment was
// sent after it had been acknowledged, and each connection's MKV file is
// valid and decodes to exactly its frames.
func (h *harness) check(skipped map[int64]bool) []kvslocal.Fragment {
	h.t.Helper()
	got := h.kvs.Fragments(testStream)
	byTC := map[int64][]kvslocal.Fragment{}
	for _, f := range got {
		byTC[f.Timecode] = append(byTC[f.Timecode], f)
	}
	for _, tc := range h.order {
		want := h.frags[tc]
		recv := byTC[tc]
		if skipped[tc] {
			if len(recv) != 0 {
				h.t.Errorf("fragment %d was given up but the endpoint stored it %d times", tc, len(recv))
			}
			continue
		}
		if len(recv) == 0 {
			h.t.Errorf("fragment %d (ring id %d) never arrived", tc, h.ids[tc])
			continue
		}
		sum := sha256.Sum256(want.Cluster)
		for _, r := range recv {
			if r.SHA256 != hex.EncodeToString(sum[:]) || r.Frames != want.Frames || !r.KeyFrameFirst {
				h.t.Errorf("fragment %d arrived as %d frames sha %s key-first %v; sent %d frames sha %x",
					tc, r.Frames, r.SHA256, r.KeyFrameFirst, want.Frames, sum)
			}
		}
	}
	h.mu.Lock()
	if len(h.resentAck) > 0 {
		h.t.Errorf("fragments sent again after they were acknowledged: %v", h.resentAck)
	}
	h.mu.Unlock()
	// Every stored connection file must be a valid MKV holding exactly
	// the frames of the fragments recorded in it.
	files := map[string]int{}
	for _, f := range got {
		files[f.File] += f.Frames
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if h.quickCheck {
			break
		}
		if n == "" {
			h.t.Fatal("endpoint recorded a fragment without a file")
		}
		mkvcheck.Check(h.t, n, mkvcheck.Expect{Frames: files[n]})
	}
	return got
}

// countingProvider hands out credentials from next and counts the calls.
type countingProvider struct {
	mu    sync.Mutex
	calls int
	next  func() aws.Credentials
}

func (p *countingProvider) Retrieve(context.Context) (credentials.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return fromSDK(p.next()), nil
}

// fromSDK converts what the local KVS endpoint issues (it speaks the
// SDK's types, being a stand-in for the service) to the daemon's type.
func fromSDK(c aws.Credentials) credentials.Credentials {
	return credentials.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
		SessionToken: c.SessionToken, Source: c.Source, CanExpire: c.CanExpire, Expires: c.Expires}
}

// static is a provider that always hands out c.
func static(c aws.Credentials) credentials.Provider {
	return credentials.StaticProvider{Value: fromSDK(c)}
}

func (p *countingProvider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}
