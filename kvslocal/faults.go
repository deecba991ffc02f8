package kvslocal

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// faults are per-stream failures armed by tests.
type faults struct {
	mu        sync.Mutex
	throttle  int
	failures  []fragmentFailure
	dropAfter []int64
	stall     chan struct{} // non-nil while ACKs are withheld
	stallGen  int
	slowBPS   int64
	poisons   []poison
	stallUpTo int // connections numbered up to this never get ACKs
}

func (f *faults) connStalled(num int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return num <= f.stallUpTo
}

// poison fails attempts at one fragment, identified by its Cluster
// Timecode once the first attempt binds it.
type poison struct {
	code     int
	tc       int64 // -1 until bound
	times    int   // attempts failed so far
	attempts int   // attempts to fail; 0: all
}

type fragmentFailure struct {
	code int
	skip int
}

func (f *faults) takeThrottle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.throttle > 0 {
		f.throttle--
		return true
	}
	return false
}

// fragmentStarted returns the injected error code and drop point for the
// fragment that just started, and ages the other armed failures.
func (f *faults) fragmentStarted(tc int64) (code int, drop int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	drop = -1
	for i := range f.poisons {
		p := &f.poisons[i]
		if p.tc < 0 {
			p.tc = tc
		}
		if p.tc == tc && (p.attempts == 0 || p.times < p.attempts) {
			p.times++
			return p.code, drop
		}
	}
	if len(f.dropAfter) > 0 {
		drop, f.dropAfter = f.dropAfter[0], f.dropAfter[1:]
	}
	keep := f.failures[:0]
	for _, ff := range f.failures {
		switch {
		case ff.skip == 0 && code == 0:
			code = ff.code
		default:
			if ff.skip > 0 {
				ff.skip--
			}
			keep = append(keep, ff)
		}
	}
	f.failures = keep
	return code, drop
}

func (f *faults) stallChan() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stall
}

func (f *faults) slow() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slowBPS
}

func (s *Server) faultStream(name string) (*stream, error) {
	st := s.findStream(name)
	if st == nil {
		return nil, fmt.Errorf("kvslocal: fault on stream %q: no such stream (create it first)", name)
	}
	return st, nil
}

// FailFragment makes the stream answer a fragment with ERROR code instead
// of RECEIVED, then close the connection as the service does. skip counts
// fragments to let through first: 0 fails the next fragment to start.
// Any ErrorId can be injected (see ErrorCodes).
func (s *Server) FailFragment(name string, code, skip int) error {
	st, err := s.faultStream(name)
	if err != nil {
		return err
	}
	st.faults.mu.Lock()
	st.faults.failures = append(st.faults.failures, fragmentFailure{code, skip})
	st.faults.mu.Unlock()
	return nil
}

// PoisonFragment makes the next fragment to start on the stream fail with
// ERROR code, and later attempts at a fragment with the same timecode too,
// attempts times in all (0: for ever): a fragment the service keeps
// refusing. The other armed faults do not age on it.
func (s *Server) PoisonFragment(name string, code, attempts int) error {
	st, err := s.faultStream(name)
	if err != nil {
		return err
	}
	st.faults.mu.Lock()
	st.faults.poisons = append(st.faults.poisons, poison{code: code, tc: -1, attempts: attempts})
	st.faults.mu.Unlock()
	return nil
}

// Poisoned returns the timecodes of the stream's poisoned fragments (those
// bound so far) and how many attempts at each were refused.
func (s *Server) Poisoned(name string) map[int64]int {
	st := s.findStream(name)
	if st == nil {
		return nil
	}
	st.faults.mu.Lock()
	defer st.faults.mu.Unlock()
	out := map[int64]int{}
	for _, p := range st.faults.poisons {
		if p.tc >= 0 {
			out[p.tc] = p.times
		}
	}
	return out
}

// SetClockOffset moves the server's clock by d from Options.Now, at once:
// a producer whose clock is right then looks d off to the server
// (signatures, 4007 and the Date header all follow).
func (s *Server) SetClockOffset(d time.Duration) { s.clockOffset.Store(int64(d)) }

// DropConnection aborts the PutMedia connection (TCP close, no ACK, no end
// of response) once afterBytes bytes of the next fragment to start have
// arrived.
func (s *Server) DropConnection(name string, afterBytes int64) error {
	st, err := s.faultStream(name)
	if err != nil {
		return err
	}
	st.faults.mu.Lock()
	st.faults.dropAfter = append(st.faults.dropAfter, afterBytes)
	st.faults.mu.Unlock()
	return nil
}

// StallAcks withholds every ACK on the stream (they queue up, in order)
// until release is called. Calling release twice is harmless.
func (s *Server) StallAcks(name string) (release func(), err error) {
	st, err := s.faultStream(name)
	if err != nil {
		return nil, err
	}
	st.faults.mu.Lock()
	if st.faults.stall == nil {
		st.faults.stall = make(chan struct{})
	}
	st.faults.stallGen++
	gen := st.faults.stallGen
	st.faults.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			st.faults.mu.Lock()
			defer st.faults.mu.Unlock()
			if st.faults.stall != nil && st.faults.stallGen == gen {
				close(st.faults.stall)
				st.faults.stall = nil
			}
		})
	}, nil
}

// StallOpenAcks withholds every ACK of the PutMedia connections open or
// made so far on the stream, for ever, while they keep reading: a
// connection that takes bytes but never acknowledges. Connections made
// later acknowledge normally.
func (s *Server) StallOpenAcks(name string) error {
	st, err := s.faultStream(name)
	if err != nil {
		return err
	}
	st.mu.Lock()
	upTo := st.conns
	st.mu.Unlock()
	st.faults.mu.Lock()
	st.faults.stallUpTo = upTo
	st.faults.mu.Unlock()
	return nil
}

// StallAcksFor withholds ACKs for d.
func (s *Server) StallAcksFor(name string, d time.Duration) error {
	release, err := s.StallAcks(name)
	if err != nil {
		return err
	}
	time.AfterFunc(d, release)
	return nil
}

// Throttle makes the next n calls naming the stream (control plane or
// PutMedia) fail with 400 ClientLimitExceededException.
func (s *Server) Throttle(name string, n int) error {
	st, err := s.faultStream(name)
	if err != nil {
		return err
	}
	st.faults.mu.Lock()
	st.faults.throttle += n
	st.faults.mu.Unlock()
	return nil
}

// SlowReader limits how fast the server reads PutMedia bodies of the
// stream, in bytes per second (0 removes the limit). It applies to open
// connections at once, which models a slow link.
func (s *Server) SlowReader(name string, bytesPerSecond int64) error {
	st, err := s.faultStream(name)
	if err != nil {
		return err
	}
	st.faults.mu.Lock()
	st.faults.slowBPS = bytesPerSecond
	st.faults.mu.Unlock()
	return nil
}

// DownMode says how the endpoint is down.
type DownMode int

const (
	// Unavailable answers every request with 503 ServiceUnavailableException.
	Unavailable DownMode = iota
	// Refused closes the listener and every connection: clients get
	// connection refused until the endpoint is up again (same address).
	Refused
)

type downState struct {
	active bool
	mode   DownMode
	timer  *time.Timer
}

func (s *Server) isDown503() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down.active && s.down.mode == Unavailable
}

// Down takes the endpoint down for d (until Up when d is 0).
func (s *Server) Down(mode DownMode, d time.Duration) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.down.timer != nil {
		s.down.timer.Stop()
		s.down.timer = nil
	}
	s.down.active, s.down.mode = true, mode
	var srvs []*http.Server
	if mode == Refused {
		srvs, s.srvs = s.srvs, nil
	}
	if d > 0 {
		s.down.timer = time.AfterFunc(d, s.Up)
	}
	s.mu.Unlock()
	if len(srvs) > 0 {
		s.closeListeners(srvs)
	}
}

// Up ends a Down period; a refused endpoint listens again on its address.
func (s *Server) Up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.down.active {
		return
	}
	s.down.active = false
	if s.down.timer != nil {
		s.down.timer.Stop()
		s.down.timer = nil
	}
	if len(s.srvs) == 0 {
		if err := s.listenLocked(); err != nil {
			s.log.Error("kvslocal: cannot listen again", "err", err)
		}
	}
}
