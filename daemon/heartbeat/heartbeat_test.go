package heartbeat

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeNow is a settable clock.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestStuckAfterLimitOnlyWhileWorking(t *testing.T) {
	clk := &fakeNow{t: time.Unix(1000, 0)}
	m := newMonitor(clk.now)
	a := m.Register("cam/capture")
	b := m.Register("cam/fragmenter")

	clk.add(5 * time.Second)
	if got := m.Stuck(10 * time.Second); len(got) != 0 {
		t.Fatalf("stuck after 5 s with a 10 s limit: %v", got)
	}
	// a waits for its device (idle) for a long time: alive. b is working.
	a.Idle()
	clk.add(6 * time.Second)
	got := m.Stuck(10 * time.Second)
	if len(got) != 1 || got[0].Name != "cam/fragmenter" || got[0].For != 11*time.Second {
		t.Fatalf("Stuck = %v, want cam/fragmenter for 11s", got)
	}
	b.Beat()
	a.Beat()
	if got := m.Stuck(10 * time.Second); len(got) != 0 {
		t.Fatalf("stuck right after beats: %v", got)
	}
	b.Close()
	clk.add(time.Minute)
	if got := m.Stuck(10 * time.Second); len(got) != 1 || got[0].Name != "cam/capture" {
		t.Fatalf("a closed stage still counted or the working one missed: %v", got)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1", m.Len())
	}
}

func TestNilMonitorAndStage(t *testing.T) {
	var m *Monitor
	s := m.Register("x")
	s.Beat()
	s.Idle()
	s.Close()
	if m.Stuck(0) != nil || m.Len() != 0 || s.Name() != "" {
		t.Fatal("nil monitor reports something")
	}
	if FromContext(context.Background()) != nil {
		t.Fatal("empty context carries a stage")
	}
	st := New().Register("y")
	if FromContext(NewContext(context.Background(), st)) != st {
		t.Fatal("stage lost in the context")
	}
}

func TestArmStallBlocksTheNamedStageOnly(t *testing.T) {
	m := New()
	other := m.Register("cam/capture")
	victim := m.Register("cam/fragmenter")
	stalled := m.ArmStall("cam/fragmenter")

	other.Beat() // not the armed name: returns
	returned := make(chan struct{})
	go func() {
		victim.Beat()
		close(returned)
	}()
	select {
	case <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("the armed stage did not stall")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(m.Stuck(50*time.Millisecond)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled stage never counted as stuck")
		}
		other.Idle()
		time.Sleep(10 * time.Millisecond) // polls the real clock; not synchronisation
	}
	if got := m.Stuck(50 * time.Millisecond); len(got) != 1 || got[0].Name != "cam/fragmenter" {
		t.Fatalf("Stuck = %v", got)
	}
	select {
	case <-returned:
		t.Fatal("the stalled Beat returned")
	default:
	}
	m.ReleaseStall()
	<-returned
	// Disarmed after one stall.
	victim.Beat()
}
