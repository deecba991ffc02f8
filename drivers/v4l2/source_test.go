package v4l2

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/media"
)

// step is one scripted result of session.next.
type step struct {
	buf   buffer
	err   error
	panic string
}

// fakeCamera plays scripts, one per open; an open beyond the scripts, or
// with openErr set, fails.
type fakeCamera struct {
	mu      sync.Mutex
	scripts [][]step
	opens   int
	openErr error
	keyReqs int
	closed  int
	// waits are the timeouts next was called with, in order.
	waits []time.Duration
}

type fakeSession struct {
	cam  *fakeCamera
	left []step
}

func (c *fakeCamera) open(*Source) (session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.openErr != nil {
		return nil, c.openErr
	}
	if c.opens >= len(c.scripts) {
		c.opens++
		return nil, syscall.ENOENT // unplugged for good
	}
	s := &fakeSession{cam: c, left: c.scripts[c.opens]}
	c.opens++
	return s, nil
}

func (f *fakeSession) next(timeout time.Duration) (buffer, bool, error) {
	f.cam.mu.Lock()
	f.cam.waits = append(f.cam.waits, timeout)
	f.cam.mu.Unlock()
	if len(f.left) == 0 {
		return buffer{}, false, nil // silence: the stall timeout ends it
	}
	st := f.left[0]
	f.left = f.left[1:]
	if st.panic != "" {
		panic(st.panic)
	}
	if st.err != nil {
		return buffer{}, false, st.err
	}
	return st.buf, true, nil
}

func (f *fakeSession) release(buffer) error { return nil }
func (f *fakeSession) forceKeyFrame() error {
	f.cam.mu.Lock()
	defer f.cam.mu.Unlock()
	f.cam.keyReqs++
	return nil
}
func (f *fakeSession) close() { f.cam.mu.Lock(); f.cam.closed++; f.cam.mu.Unlock() }

// picID makes every scripted picture distinct, as an encoder's are.
var picID byte

// pic is a buffer holding a distinct picture with driver sequence number
// seq; key pictures carry SPS/PPS.
func pic(seq uint32, key bool) step {
	picID++
	n := []byte{0x41, 0x9a, byte(seq), picID, 0x21}
	data := annexB(n)
	if key {
		n[0] = 0x65
		data = annexB(sps, pps, n)
	}
	return step{buf: buffer{index: seq % 4, data: data, seq: seq, ts: clock.System{}.Mono(),
		flags: bufFlagTimestampMonotonic}}
}

func runFake(t *testing.T, cam *fakeCamera, frames int) (*Source, []media.Frame, error) {
	t.Helper()
	s, err := newSource(Config{Device: "/dev/fake", Width: 320, Height: 240, FPS: 30,
		Clock: clock.System{Mode: clock.SyncTrust}, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		StallTimeout: 50 * time.Millisecond}, cam.open)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, 64)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	var got []media.Frame
	deadline := time.After(20 * time.Second)
	for len(got) < frames {
		select {
		case f := <-out:
			got = append(got, f)
		case err := <-done:
			return s, got, err
		case <-deadline:
			t.Fatalf("got %d of %d frames; stats %+v", len(got), frames, s.Stats())
		}
	}
	cancel()
	return s, got, <-done
}

func TestSequenceGapsAreDrops(t *testing.T) {
	cam := &fakeCamera{scripts: [][]step{{pic(0, true), pic(1, false), pic(4, false), pic(5, false)}}}
	s, got, err := runFake(t, cam, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantSeq := []uint64{0, 1, 4, 5}
	for i, f := range got {
		if f.Seq != wantSeq[i] {
			t.Fatalf("frame %d: seq %d, want %d", i, f.Seq, wantSeq[i])
		}
	}
	if !got[0].Key || got[1].Key || len(got[0].NALUs) != 3 {
		t.Fatalf("key frame detection: %v %v, %d NAL units", got[0].Key, got[1].Key, len(got[0].NALUs))
	}
	if st := s.Stats(); st.Dropped != 2 || st.Frames != 4 {
		t.Fatalf("stats %+v, want 2 dropped by the driver, 4 delivered", st)
	}
}

// TestDeviceLossIsSurvived: a dequeue error (the camera unplugged), a
// panic inside the ioctl layer and a stall each end a session; the source
// reopens, counts each, and frames keep flowing with increasing seq.
func TestDeviceLossIsSurvived(t *testing.T) {
	cam := &fakeCamera{scripts: [][]step{
		{pic(0, true), pic(1, false), {err: syscall.ENODEV}},
		{pic(0, true), {panic: "index out of range in the ioctl layer"}},
		{pic(0, true), pic(1, false)}, // then silence: a stall
		{pic(0, true)},
	}}
	s, got, err := runFake(t, cam, 6)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range got {
		if f.Seq != uint64(i) {
			t.Fatalf("frame %d: seq %d", i, f.Seq)
		}
		if i > 0 && !f.Time.After(got[i-1].Time) {
			t.Fatalf("frame %d not after frame %d", i, i-1)
		}
	}
	st := s.Stats()
	if st.Errors < 3 || st.Dropped != 0 {
		t.Fatalf("stats %+v: want 3 recovered errors, no drops", st)
	}
	cam.mu.Lock()
	defer cam.mu.Unlock()
	if cam.closed < 3 {
		t.Fatalf("%d sessions closed, want every failed one (3)", cam.closed)
	}
}

func TestReplayAfterReopenIsNotDeliveredTwice(t *testing.T) {
	last := pic(7, false)
	replay := last
	replay.buf.data = append(append([]byte(nil), last.buf.data...), 0xde, 0xad) // stale bytesused
	cam := &fakeCamera{scripts: [][]step{
		{pic(6, true), last},
		{replay, pic(8, false)},
	}}
	s, got, err := runFake(t, cam, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got[2].NALUs[0][2] != 8 {
		t.Fatalf("third frame is %x, want picture 8", got[2].NALUs[0])
	}
	if st := s.Stats(); st.Frames != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFatalOpenErrorEndsRun(t *testing.T) {
	cam := &fakeCamera{openErr: &fatalError{ErrNoH264}}
	_, _, err := runFake(t, cam, 1)
	if !errors.Is(err, ErrNoH264) {
		t.Fatalf("Run = %v, want ErrNoH264", err)
	}
}

func TestKeyFrameRequestReachesDevice(t *testing.T) {
	cam := &fakeCamera{scripts: [][]step{{pic(0, true)}}}
	s, err := newSource(Config{Device: "/dev/fake", Width: 320, Height: 240, FPS: 30,
		Clock: clock.System{Mode: clock.SyncTrust}}, cam.open)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan media.Frame, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	<-out // capture is running
	s.RequestKeyFrame()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cam.mu.Lock()
		n := cam.keyReqs
		cam.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key frame request never reached the device")
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestBatchedDequeue: after the first buffer of a wake the loop takes the
// ones already filled without polling, then sleeps out the batch interval
// before it polls again; with a wake per frame every dequeue polls.
func TestBatchedDequeue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wake    time.Duration
		buffers int
		batch   time.Duration // the sleep after a drained batch
	}{
		{"default", 0, 5, 100 * time.Millisecond}, // 3 frames, two of 5 buffers free
		{"few buffers", 0, 3, 0},                  // one frame a batch: no batching
		{"per-frame", -1, 8, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := &fakeCamera{scripts: [][]step{{pic(0, true), pic(1, false), pic(2, false), pic(3, false)}}}
			s, err := newSource(Config{Device: "/dev/fake", Width: 320, Height: 240, FPS: 30, Buffers: tc.buffers, WakeInterval: tc.wake,
				Clock: clock.System{Mode: clock.SyncTrust}, StallTimeout: time.Hour}, cam.open)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.cfg.batchInterval(); got != tc.batch {
				t.Fatalf("batch interval %v, want %v", got, tc.batch)
			}
			out := make(chan media.Frame, 64)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			began := time.Now()
			go func() { done <- s.Run(ctx, out) }()
			for range 4 {
				<-out
			}
			// Wait for the first poll after the frames: the batch's sleep
			// (if any) is over.
			for {
				cam.mu.Lock()
				n := len(cam.waits)
				cam.mu.Unlock()
				if n >= 6 {
					break
				}
				time.Sleep(time.Millisecond) // polling interval, not synchronisation
			}
			elapsed := time.Since(began)
			cancel()
			<-done
			cam.mu.Lock()
			waits := cam.waits[:6]
			cam.mu.Unlock()
			want := []time.Duration{pollInterval, pollInterval, pollInterval, pollInterval, pollInterval, pollInterval}
			if tc.batch > 0 {
				// poll for the first; take three more and find none; poll
				want = []time.Duration{pollInterval, 0, 0, 0, 0, pollInterval}
				if elapsed < tc.batch {
					t.Errorf("polled again after %v, before the batch interval %v", elapsed, tc.batch)
				}
			}
			for i := range want {
				if waits[i] != want[i] {
					t.Fatalf("next timeouts %v, want %v", waits, want)
				}
			}
		})
	}
}
