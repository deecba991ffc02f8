package ring

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// ackedRing makes a ring in dir with n fragments, the first acked of them
// acknowledged.
func ackedRing(t *testing.T, dir string, n, acked int) {
	t.Helper()
	r := mustOpen(t, dir, Options{Capacity: 4 << 20})
	for i := 0; i < n; i++ {
		f := genFragment(int64(i), 1000)
		id := mustAppend(t, r, &f)
		if i < acked {
			if err := r.Ack(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.Close()
}

func openLogged(t *testing.T, dir string) (*Ring, *logCapture) {
	t.Helper()
	lc := &logCapture{}
	return mustOpen(t, dir, Options{Capacity: 4 << 20, Logger: slog.New(lc)}), lc
}

func TestAckLogDeletedIsReported(t *testing.T) {
	dir := t.TempDir()
	ackedRing(t, dir, 10, 6)
	if err := os.Remove(filepath.Join(dir, ackLogName)); err != nil {
		t.Fatal(err)
	}
	r, lc := openLogged(t, dir)
	st := r.Stats()
	if st.AckLogReset != AckLogMissing || st.Unacked != 10 || lc.count(slog.LevelError, "SENT AGAIN") != 1 {
		t.Fatalf("deleted ack log: reset %q, %d unacked, %d error reports; want %q, 10, 1", st.AckLogReset, st.Unacked, lc.count(slog.LevelError, "SENT AGAIN"), AckLogMissing)
	}
	if err := r.Ack(1); err != nil {
		t.Fatal(err)
	}
	r.Close()
	// Reported once: the new log carries the identity.
	r, lc = openLogged(t, dir)
	defer r.Close()
	if st := r.Stats(); st.AckLogReset != "" || st.Unacked != 9 || lc.count(slog.LevelError, "SENT AGAIN") != 0 {
		t.Fatalf("reopen: reset %q, %d unacked (want 9), %d error reports", st.AckLogReset, st.Unacked, lc.count(slog.LevelError, "SENT AGAIN"))
	}
}

func TestAckLogReplacedIsReported(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	ackedRing(t, dir, 10, 2)
	ackedRing(t, other, 12, 12) // another ring that acknowledged ids 1..12
	b, err := os.ReadFile(filepath.Join(other, ackLogName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ackLogName), b, 0o640); err != nil {
		t.Fatal(err)
	}
	r, lc := openLogged(t, dir)
	defer r.Close()
	// The foreign log's acknowledgements must not mark this ring's video
	// as uploaded.
	if st := r.Stats(); st.AckLogReset != AckLogReplaced || st.Unacked != 10 || lc.count(slog.LevelError, "SENT AGAIN") != 1 {
		t.Fatalf("foreign ack log: reset %q, %d unacked, %d error reports; want %q, 10, 1", st.AckLogReset, st.Unacked, lc.count(slog.LevelError, "SENT AGAIN"), AckLogReplaced)
	}
}

func TestIdentityRecoveredAndAdopted(t *testing.T) {
	dir := t.TempDir()
	ackedRing(t, dir, 10, 4)
	want := readIdentity(dir)
	if want == 0 {
		t.Fatal("no ring.id written")
	}
	// ring.id lost: the ack log knows the identity.
	os.Remove(filepath.Join(dir, identName))
	r, lc := openLogged(t, dir)
	if st := r.Stats(); st.AckLogReset != "" || st.Unacked != 6 || lc.count(slog.LevelError, "") != 0 {
		t.Fatalf("ring.id lost: reset %q, %d unacked (want 6)", st.AckLogReset, st.Unacked)
	}
	r.Close()
	if got := readIdentity(dir); got != want {
		t.Fatalf("ring.id rewritten as %x, want %x", got, want)
	}

	// A ring from before identities: its log has no identity slot and
	// there is no ring.id. Its acknowledgements are kept.
	legacy := make([]byte, DefaultAckLogSize)
	for i := 0; i < 3; i++ {
		ackSlot{Kind: 'A', ID: ID(i + 1), Count: 1}.put(legacy[i*ackSlotSize:])
	}
	os.WriteFile(filepath.Join(dir, ackLogName), legacy, 0o640)
	os.Remove(filepath.Join(dir, identName))
	r, lc = openLogged(t, dir)
	if st := r.Stats(); st.AckLogReset != "" || st.Unacked != 7 || lc.count(slog.LevelError, "") != 0 {
		t.Fatalf("legacy ring: reset %q, %d unacked (want 7)", st.AckLogReset, st.Unacked)
	}
	r.Close()
	r, lc = openLogged(t, dir)
	defer r.Close()
	if st := r.Stats(); st.AckLogReset != "" || st.Unacked != 7 || readIdentity(dir) == 0 || lc.count(slog.LevelError, "") != 0 {
		t.Fatalf("legacy ring reopened: reset %q, %d unacked (want 7), identity %x", st.AckLogReset, st.Unacked, readIdentity(dir))
	}
}

// TestLegacyFullAckLogAdopted: a ring from before identities whose ack log
// is full gets its identity through the checkpoint, and neither this Open
// nor the next takes the log for a foreign one.
func TestLegacyFullAckLogAdopted(t *testing.T) {
	dir := t.TempDir()
	ackedRing(t, dir, 10, 0)
	legacy := make([]byte, DefaultAckLogSize)
	for i := 0; i < DefaultAckLogSize/ackSlotSize; i++ {
		ackSlot{Kind: 'A', ID: ID(i%5 + 1), Count: 1}.put(legacy[i*ackSlotSize:]) // ids 1..5, over and over
	}
	os.WriteFile(filepath.Join(dir, ackLogName), legacy, 0o640)
	os.Remove(filepath.Join(dir, identName))
	for open := 0; open < 3; open++ {
		r, lc := openLogged(t, dir)
		st := r.Stats()
		r.Close()
		if st.AckLogReset != "" || st.Unacked != 5 || lc.count(slog.LevelError, "") != 0 {
			t.Fatalf("open %d of a legacy ring with a full ack log: reset %q, %d unacked (want 5)", open, st.AckLogReset, st.Unacked)
		}
	}
	if readIdentity(dir) == 0 {
		t.Fatal("no ring.id after three opens")
	}
}
