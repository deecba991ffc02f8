package logging

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"
)

// newLimited returns a logger folding repeats over a text handler writing
// to the returned buffer, on a fake clock with a one-minute window.
func newLimited() (*slog.Logger, *lockedBuffer, *fakeClock) {
	var buf lockedBuffer
	clock := newFakeClock()
	h := RateLimit(textWithoutTime(&buf), WithClock(clock.now), WithRepeatWindow(time.Minute))
	return slog.New(h), &buf, clock
}

func TestRateLimitFirstPassesRepeatsSuppressed(t *testing.T) {
	log, buf, clock := newLimited()
	for i := 0; i < 5; i++ {
		log.Warn("link down", "stream", "cam-0001")
		clock.advance(time.Second)
	}
	log.Error("put failed", "op", "PutMedia")
	log.Error("put failed", "op", "PutMedia")
	wantLines(t, buf.lines(),
		`level=WARN msg="link down" stream=cam-0001`,
		`level=WARN msg="link down (repeated 4 times)" stream=cam-0001 repeated=4`,
		`level=ERROR msg="put failed" op=PutMedia`,
	)
}

func TestRateLimitSummaryOnWindowEnd(t *testing.T) {
	log, buf, clock := newLimited()
	log.Warn("link down")
	clock.advance(30 * time.Second)
	log.Warn("link down")
	log.Warn("link down")
	clock.advance(29 * time.Second)
	log.Warn("link down")
	wantLines(t, buf.lines(), `level=WARN msg="link down"`)

	// A minute after the first line the window is over: the summary comes
	// out, and the next copy starts a new window as a first line.
	clock.advance(time.Second)
	log.Warn("link down")
	wantLines(t, buf.lines(),
		`level=WARN msg="link down"`,
		`level=WARN msg="link down (repeated 3 times)" repeated=3`,
		`level=WARN msg="link down"`,
	)
}

func TestRateLimitSummaryOnDifferentRecord(t *testing.T) {
	log, buf, _ := newLimited()
	log.Warn("link down")
	log.Warn("link down")
	log.Info("reconnected")
	// Still within the window: folded again, summarized before the next
	// record that is written.
	log.Warn("link down")
	log.Warn("link down")
	log.Warn("link down")
	log.Error("disk full")
	wantLines(t, buf.lines(),
		`level=WARN msg="link down"`,
		`level=WARN msg="link down (repeated 1 times)" repeated=1`,
		`level=INFO msg=reconnected`,
		`level=WARN msg="link down (repeated 3 times)" repeated=3`,
		`level=ERROR msg="disk full"`,
	)
}

func TestRateLimitSweepWritesPendingSummary(t *testing.T) {
	var buf lockedBuffer
	clock := newFakeClock()
	l := newBareLimiter(&buf, clock)
	log := slog.New(newScope(l))
	log.Warn("link down")
	log.Warn("link down")
	clock.advance(time.Minute)
	// What the timer runs once the window is over, with nothing else
	// logged after the fault stopped.
	l.sweep()
	wantLines(t, buf.lines(),
		`level=WARN msg="link down"`,
		`level=WARN msg="link down (repeated 1 times)" repeated=1`,
	)
	if len(l.tracked) != 0 {
		t.Errorf("%d records still tracked after their window", len(l.tracked))
	}
}

func newBareLimiter(buf *lockedBuffer, clock *fakeClock) *limiter {
	return newLimiter(textWithoutTime(buf), options{window: time.Minute, now: clock.now})
}

func TestRateLimitDifferentAttrsAreDifferentRecords(t *testing.T) {
	log, buf, _ := newLimited()
	log.Warn("link down", "stream", "cam-0001")
	log.Warn("link down", "stream", "cam-0002")
	log.Warn("link down", "stream", "cam-0001", "attempt", 2)
	log.Error("link down", "stream", "cam-0001")
	log.With("stream", "cam-0003").Warn("link down")
	log.WithGroup("up").Warn("link down", "stream", "cam-0001")
	log.Warn("link down", "stream", "cam-0001")
	wantLines(t, buf.lines(),
		`level=WARN msg="link down" stream=cam-0001`,
		`level=WARN msg="link down" stream=cam-0002`,
		`level=WARN msg="link down" stream=cam-0001 attempt=2`,
		`level=ERROR msg="link down" stream=cam-0001`,
		`level=WARN msg="link down" stream=cam-0003`,
		`level=WARN msg="link down" up.stream=cam-0001`,
	)
}

func TestRateLimitBelowWarnPasses(t *testing.T) {
	log, buf, _ := newLimited()
	log.Info("frame", "n", 1)
	log.Info("frame", "n", 1)
	log.Debug("tick")
	log.Debug("tick")
	wantLines(t, buf.lines(),
		`level=INFO msg=frame n=1`,
		`level=INFO msg=frame n=1`,
		`level=DEBUG msg=tick`,
		`level=DEBUG msg=tick`,
	)
}

func TestRateLimitWithAttrsAndGroups(t *testing.T) {
	log, buf, clock := newLimited()
	cam := log.With("stream", "cam-0001").WithGroup("upload").With("op", "PutMedia")
	cam.Warn("retry", "attempt", 1)
	cam.Warn("retry", "attempt", 1)
	clock.advance(time.Minute)
	cam.Info("ok")
	wantLines(t, buf.lines(),
		`level=WARN msg=retry stream=cam-0001 upload.op=PutMedia upload.attempt=1`,
		`level=WARN msg="retry (repeated 1 times)" stream=cam-0001 upload.op=PutMedia upload.attempt=1 repeated=1`,
		`level=INFO msg=ok stream=cam-0001 upload.op=PutMedia`,
	)
}

func TestRateLimitConcurrent(t *testing.T) {
	log, buf, clock := newLimited()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cam := log.With("stream", "cam-0001")
			for i := 0; i < each; i++ {
				cam.Warn("link down")
				log.Warn("worker fault", "worker", w)
			}
		}()
	}
	wg.Wait()
	clock.advance(time.Minute)
	log.Info("done")

	counts := map[string]int{}
	for _, line := range buf.lines() {
		counts[line]++
	}
	// Different records in between keep flushing summaries, so the
	// suppressed copies are spread over several summary lines; what must
	// hold is that each record was written once as itself and every other
	// copy is counted by exactly one summary.
	check := func(msg, attrs string, want int) {
		t.Helper()
		first := fmt.Sprintf("level=WARN msg=%q %s", msg, attrs)
		if counts[first] != 1 {
			t.Errorf("%q written %d times, want once", first, counts[first])
		}
		total := 0
		for line, n := range counts {
			var k int
			format := fmt.Sprintf("level=WARN msg=\"%s (repeated %%d times)\" %s repeated=%%d", msg, attrs)
			var k2 int
			if c, _ := fmt.Sscanf(line, format, &k, &k2); c == 2 && k == k2 {
				total += k * n
			}
		}
		if total != want {
			t.Errorf("%q: summaries count %d copies, want %d", first, total, want)
		}
	}
	check("link down", "stream=cam-0001", workers*each-1)
	for w := 0; w < workers; w++ {
		check("worker fault", "worker="+strconv.Itoa(w), each-1)
	}
	if last := buf.lines()[len(buf.lines())-1]; last != `level=INFO msg=done` {
		t.Errorf("last line %q", last)
	}
}

func TestRateLimitBoundedMemory(t *testing.T) {
	var buf lockedBuffer
	clock := newFakeClock()
	l := newBareLimiter(&buf, clock)
	log := slog.New(newScope(l))
	for i := 0; i < MaxTracked+10; i++ {
		log.Warn("fault", "n", i)
		if len(l.tracked) > MaxTracked {
			t.Fatalf("%d records tracked, bound is %d", len(l.tracked), MaxTracked)
		}
	}
	if len(l.tracked) != MaxTracked {
		t.Errorf("%d records tracked, want the bound %d", len(l.tracked), MaxTracked)
	}
	before := len(buf.lines())
	// The oldest were forgotten, so a copy of the first is written again;
	// the newest is still folded.
	log.Warn("fault", "n", 0)
	log.Warn("fault", "n", MaxTracked+9)
	got := buf.lines()[before:]
	wantLines(t, got, `level=WARN msg=fault n=0`)
}

func TestRateLimitTimerWritesSummary(t *testing.T) {
	records := make(chan slog.Record, 10)
	h := RateLimit(funcHandler(func(r slog.Record) { records <- r }), WithRepeatWindow(20*time.Millisecond))
	log := slog.New(h)
	log.Warn("link down")
	log.Warn("link down")
	log.Warn("link down")
	if r := <-records; r.Message != "link down" {
		t.Fatalf("first record %q", r.Message)
	}
	// Nothing else is logged: the summary must come by itself once the
	// window is over.
	select {
	case r := <-records:
		if r.Message != "link down (repeated 2 times)" {
			t.Errorf("summary %q", r.Message)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no summary written after the window ended")
	}
}
