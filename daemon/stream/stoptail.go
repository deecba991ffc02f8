package stream

import (
	"context"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/internal/kvs"
)

// The stop tail. When the daemon stops, the open fragment is usually a
// fraction of a fragment long, and the service refuses fragments shorter
// than kvs.MinFragmentDuration: flushed as it is, the last moments before
// every stop or restart would be lost. So on stop the source keeps
// running until the open fragment is at least kvs.MinFragmentDuration
// long. From then on the fragmenter no longer cuts (its target goes to the
// hard cap), so the frames the source still delivers while it stops join
// that last fragment instead of starting one too short to upload.
// StopTailMax bounds the wait; a source that ends meanwhile (end of file,
// camera unplugged) ends it at once, and what is open then is stored as
// it is.

// StopTailMax is the longest the source runs on after the stream was
// asked to stop. It covers one minimum-length fragment plus scheduling.
const StopTailMax = kvs.MinFragmentDuration + time.Second

// stopTail is closed by the fragmenter goroutine when the tail is done.
// The zero value is ready to use.
type stopTail struct {
	mu   sync.Mutex
	ch   chan struct{}
	once sync.Once
}

func (t *stopTail) done() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ch == nil {
		t.ch = make(chan struct{})
	}
	return t.ch
}

func (t *stopTail) finish() {
	t.done()
	t.once.Do(func() { close(t.ch) })
}

// stopAfterTail runs once the stream's context ended while the source
// runs: it waits for the fragmenter goroutine to finish the tail, at most
// StopTailMax, then stops the source through cancel.
func (s *Stream) stopAfterTail(cancel context.CancelFunc) {
	t := time.NewTimer(StopTailMax)
	defer t.Stop()
	select {
	case <-s.tail.done():
	case <-t.C:
		s.log.Debug("stopping the source before the open fragment reached the minimum duration", "waited", StopTailMax)
	}
	cancel()
}

// tailReached reports whether the open fragment may be the last one:
// it is long enough for the service.
func (s *Stream) tailReached() bool {
	return s.frag.OpenReached(kvs.MinFragmentDuration)
}
