package kvslocal

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Fragment is what the server recorded about one fragment it acknowledged
// as RECEIVED. It is also one line of <Dir>/<stream>/fragments.jsonl.
type Fragment struct {
	Stream         string `json:"stream"`
	Connection     int    `json:"connection"`      // 1-based PutMedia connection number on this stream
	FragmentNumber string `json:"fragment_number"` // as sent in the ACKs
	// Timecode is the Cluster Timecode as sent (TimecodeScale units,
	// epoch ms for ABSOLUTE streams at the usual 1 ms scale); ACKs echo it.
	Timecode int64 `json:"timecode"`
	// ProducerTime is the fragment's absolute start (RELATIVE timecodes
	// have the producer start timestamp added), in epoch ms.
	ProducerTime  int64             `json:"producer_time_ms"`
	DurationMs    int64             `json:"duration_ms"` // first to last frame start
	Frames        int               `json:"frames"`
	KeyFrames     int               `json:"key_frames"`
	Bytes         int               `json:"bytes"` // Cluster element, header and all
	KeyFrameFirst bool              `json:"key_frame_first"`
	SHA256        string            `json:"sha256"` // of the Cluster bytes as received
	Tags          map[string]string `json:"tags,omitempty"`
	File          string            `json:"file,omitempty"` // MKV file the cluster was appended to
	ReceivedAt    time.Time         `json:"received_at"`
	Persisted     bool              `json:"persisted"`
	// PersistedAt is when the PERSISTED ack went out (zero if never).
	PersistedAt time.Time `json:"persisted_at,omitzero"`
}

// Ack is one event the server sent on a PutMedia response.
type Ack struct {
	Connection       int
	EventType        string
	FragmentTimecode int64
	FragmentNumber   string
	ErrorID          int
	ErrorCode        string
	At               time.Time
}

// stream is the server's state for one stream name.
type stream struct {
	server *Server
	name   string
	info   StreamInfo        // guarded by server.mu
	tags   map[string]string // guarded by server.mu

	controlRate, putRate tokenBucket
	faults               faults

	mu        sync.Mutex
	active    *session
	conns     int
	fragments []Fragment
	// unsettled lists fragments (by index) still waiting for PERSISTED;
	// their fragments.jsonl line is written once their fate is known.
	unsettled map[int]bool
	acks      []Ack
	changed   chan struct{} // closed and replaced on every change
	bandwidth tokenBucket
	fragRate  tokenBucket
	jsonl     *os.File
}

// notifyLocked wakes waiters; st.mu must be held.
func (st *stream) notifyLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

func (st *stream) notifyDeleted() {
	st.mu.Lock()
	a := st.active
	st.mu.Unlock()
	if a != nil {
		a.abort(&StreamError{Code: ErrStreamNotActive, Msg: "the stream was deleted", Timecode: -1})
	}
}

func (st *stream) closeFiles() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.jsonl != nil {
		_ = st.jsonl.Close()
		st.jsonl = nil
	}
}

func (st *stream) dir() string {
	name := st.name
	if name == "." || name == ".." {
		name = "_" + name
	}
	return filepath.Join(st.server.opts.Dir, name)
}

// record keeps a fragment that got RECEIVED. With retention its
// fragments.jsonl line waits until PERSISTED is sent or its connection
// ends (settle), so that each fragment has one line saying whether it was
// persisted.
func (st *stream) record(f Fragment, awaitPersist bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.fragments = append(st.fragments, f)
	st.notifyLocked()
	if awaitPersist {
		if st.unsettled == nil {
			st.unsettled = map[int]bool{}
		}
		st.unsettled[len(st.fragments)-1] = true
		return nil
	}
	return st.writeLineLocked(f)
}

func (st *stream) writeLineLocked(f Fragment) error {
	if st.server.opts.Dir == "" {
		return nil
	}
	if st.jsonl == nil {
		if err := os.MkdirAll(st.dir(), 0o755); err != nil {
			return err
		}
		fh, err := os.OpenFile(filepath.Join(st.dir(), "fragments.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		st.jsonl = fh
	}
	b, _ := json.Marshal(f)
	_, err := st.jsonl.Write(append(b, '\n'))
	return err
}

func (st *stream) markPersisted(number string, at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := len(st.fragments) - 1; i >= 0; i-- {
		if st.fragments[i].FragmentNumber == number {
			st.fragments[i].Persisted = true
			st.fragments[i].PersistedAt = at
			if st.unsettled[i] {
				delete(st.unsettled, i)
				if err := st.writeLineLocked(st.fragments[i]); err != nil {
					st.server.log.Error("kvslocal: writing fragments.jsonl failed", "stream", st.name, "err", err)
				}
			}
			break
		}
	}
	st.notifyLocked()
}

// settle writes the lines of connection conn's fragments that will never
// be persisted now that the connection is over.
func (st *stream) settle(conn int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	idx := make([]int, 0, len(st.unsettled))
	for i := range st.unsettled {
		if st.fragments[i].Connection == conn {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	for _, i := range idx {
		delete(st.unsettled, i)
		if err := st.writeLineLocked(st.fragments[i]); err != nil {
			st.server.log.Error("kvslocal: writing fragments.jsonl failed", "stream", st.name, "err", err)
		}
	}
}

func (st *stream) addAck(a Ack) {
	st.mu.Lock()
	st.acks = append(st.acks, a)
	st.notifyLocked()
	st.mu.Unlock()
}

// tokenBucket is a small rate limiter; rate <= 0 means unlimited.
type tokenBucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
	init   bool
}

func (b *tokenBucket) refill(now time.Time, rate, burst float64) {
	if !b.init {
		b.tokens, b.last, b.init = burst, now, true
		return
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens += d * rate
		if b.tokens > burst {
			b.tokens = burst
		}
		b.last = now
	}
}

// allow takes one token if there is one.
func (b *tokenBucket) allow(now time.Time, rate float64) bool {
	if rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, rate, rate)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// reserve takes n tokens (going into debt) and says how long to wait
// before the debt is paid; burst is one second's worth.
func (b *tokenBucket) reserve(now time.Time, rate, n float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, rate, rate)
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / rate * float64(time.Second))
}

func (s *Server) findStream(name string) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[name]; st != nil {
		return st
	}
	for i := len(s.deleted) - 1; i >= 0; i-- {
		if s.deleted[i].name == name {
			return s.deleted[i]
		}
	}
	return nil
}

// Fragments returns the fragments a stream received (RECEIVED acks sent),
// in order, across all its connections.
func (s *Server) Fragments(name string) []Fragment {
	st := s.findStream(name)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]Fragment(nil), st.fragments...)
}

// Acks returns every ACK event sent on the stream's PutMedia responses.
func (s *Server) Acks(name string) []Ack {
	st := s.findStream(name)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]Ack(nil), st.acks...)
}

// Connections returns how many PutMedia connections the stream accepted.
func (s *Server) Connections(name string) int {
	st := s.findStream(name)
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.conns
}

// Connected reports whether a PutMedia connection is open on the stream.
func (s *Server) Connected(name string) bool {
	st := s.findStream(name)
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.active != nil
}

// PutMediaPeer returns the client address of the stream's open PutMedia
// connection, so that a test can tell that connection apart from the
// control-plane ones a client keeps alive to the same endpoint.
func (s *Server) PutMediaPeer(name string) (net.Addr, bool) {
	st := s.findStream(name)
	if st == nil {
		return nil, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.active == nil || st.active.conn == nil {
		return nil, false
	}
	return st.active.conn.RemoteAddr(), true
}

// State is what Wait conditions look at. The slices must not be kept or
// changed: they are the server's own, valid during the call.
type State struct {
	Fragments   []Fragment
	Acks        []Ack
	Connected   bool // a PutMedia connection is open
	Connections int  // PutMedia connections accepted so far
}

// Wait blocks until cond returns true for the stream's state (checked now
// and after every change), or ctx ends. cond must not call the Server, and
// the slices in the State it is given are the server's own, guarded by its
// lock: cond may read them but must not keep them after it returns.
func (s *Server) Wait(ctx context.Context, name string, cond func(State) bool) error {
	for {
		st := s.findStream(name)
		if st == nil {
			return fmt.Errorf("kvslocal: wait on stream %q: no such stream", name)
		}
		st.mu.Lock()
		ok := cond(State{Fragments: st.fragments, Acks: st.acks, Connected: st.active != nil, Connections: st.conns})
		ch := st.changed
		st.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("kvslocal: wait on stream %q: %w", name, ctx.Err())
		}
	}
}

// WaitFragments waits until the stream has received at least n fragments.
func (s *Server) WaitFragments(ctx context.Context, name string, n int) ([]Fragment, error) {
	err := s.Wait(ctx, name, func(st State) bool { return len(st.Fragments) >= n })
	return s.Fragments(name), err
}

// WaitAck waits for an ACK matching match and returns it.
func (s *Server) WaitAck(ctx context.Context, name string, match func(Ack) bool) (Ack, error) {
	var found Ack
	err := s.Wait(ctx, name, func(st State) bool {
		for _, a := range st.Acks {
			if match(a) {
				found = a
				return true
			}
		}
		return false
	})
	return found, err
}

// WaitDisconnected waits until no PutMedia connection is open on the stream.
func (s *Server) WaitDisconnected(ctx context.Context, name string) error {
	return s.Wait(ctx, name, func(st State) bool { return !st.Connected })
}

// LiveFragment is one fragment as a LIVE viewer meets it: the service's
// LIVE playback lists fragments by when they were ingested, so a fragment
// of a backlog that arrives late shows up late, after newer ones.
type LiveFragment struct {
	FragmentNumber string
	Connection     int
	// Producer is the fragment's start by its producer timestamp and
	// Duration how long it lasts (first to last frame).
	Producer time.Time
	Duration time.Duration
	// Ingested is when it was RECEIVED; Persisted when PERSISTED went
	// out (zero if never).
	Ingested, Persisted time.Time
}

// Lag is how far behind real time the fragment's end was when a LIVE
// viewer could first see it.
func (f LiveFragment) Lag() time.Duration {
	return f.Ingested.Sub(f.Producer.Add(f.Duration))
}

// LiveView returns the stream's fragments in ingestion order with their
// producer and ingestion times, the model of what a LIVE viewer sees: at
// any moment it plays the most recently ingested fragment. Tests measure
// live lag from it.
func (s *Server) LiveView(name string) []LiveFragment {
	frags := s.Fragments(name)
	out := make([]LiveFragment, 0, len(frags))
	for _, f := range frags {
		out = append(out, LiveFragment{
			FragmentNumber: f.FragmentNumber, Connection: f.Connection,
			Producer: time.UnixMilli(f.ProducerTime), Duration: time.Duration(f.DurationMs) * time.Millisecond,
			Ingested: f.ReceivedAt, Persisted: f.PersistedAt,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ingested.Before(out[j].Ingested) })
	return out
}
