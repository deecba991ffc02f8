package exec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Encoder timestamps. An encoder that knows when each frame was captured
// (rpicam-vid --save-pts, ffmpeg's mkvtimestamp_v2 muxer) can write those
// instants to a side channel: one line per frame in the "timecode format
// v2" text form, milliseconds from its first frame. With Config.PTSFile
// set, the source makes that path a FIFO, reads it alongside stdout, and
// stamps frame k at base + pts_k. base follows the smallest arrival − pts
// (the encoder's latency): down by at most ptsBaseDown per frame when a
// frame comes through faster, up by ptsBaseUp per frame otherwise, so it
// also follows an encoder clock that runs slower than the monotonic one;
// either way a step moves by at most 4 ms from the encoder's. A
// frame whose line does not come within ptsWait falls back to the frame
// clock.
const (
	ptsWait     = 100 * time.Millisecond
	ptsBaseDown = 4 * time.Millisecond
	ptsBaseUp   = 100 * time.Microsecond
	ptsQueue    = 256
)

// ptsReader delivers the capture times an encoder writes to a FIFO.
type ptsReader struct {
	f     *os.File
	times chan time.Duration
	done  chan struct{}
}

// openPTS (re)creates path as a FIFO and starts reading it. The FIFO is
// opened read-write, so that it neither blocks until the encoder opens it
// nor reads as ended between two writers.
func openPTS(path string) (*ptsReader, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("exec: pts_file %s: %w", path, err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("exec: pts_file %s: make FIFO: %w; choose a path in a directory kvscamd can write", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("exec: pts_file %s: %w", path, err)
	}
	p := &ptsReader{f: f, times: make(chan time.Duration, ptsQueue), done: make(chan struct{})}
	go p.read()
	return p, nil
}

func (p *ptsReader) read() {
	defer close(p.done)
	sc := bufio.NewScanner(p.f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ms, err := strconv.ParseFloat(line, 64)
		if err != nil {
			continue
		}
		select {
		case p.times <- time.Duration(ms * float64(time.Millisecond)):
		default: // nobody takes them: the stdout side is gone or far behind
		}
	}
}

// next returns the next frame's encoder timestamp, waiting up to ptsWait.
func (p *ptsReader) next() (time.Duration, bool) {
	select {
	case d := <-p.times:
		return d, true
	default:
	}
	t := time.NewTimer(ptsWait)
	defer t.Stop()
	select {
	case d := <-p.times:
		return d, true
	case <-t.C:
		return 0, false
	}
}

func (p *ptsReader) close() {
	p.f.Close()
	<-p.done
}

// ptsClock maps encoder timestamps onto the monotonic clock.
type ptsClock struct {
	base    time.Duration
	last    time.Duration
	started bool
}

// stamp returns the capture instant of a frame that arrived at arrival
// with encoder timestamp pts.
func (c *ptsClock) stamp(arrival, pts time.Duration) time.Duration {
	lat := arrival - pts
	if !c.started {
		c.base, c.started = lat, true
	}
	c.base = min(max(lat, c.base-ptsBaseDown), c.base+ptsBaseUp)
	// A frame is never captured after it arrived.
	out := min(c.base+pts, arrival)
	if out <= c.last {
		out = c.last + time.Millisecond
	}
	c.last = out
	return out
}
