package kvslocal_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// PERSISTED follows RECEIVED after the default delay, not at once, and
// fragments.jsonl says for each fragment whether and when it was
// persisted; LiveView lists the same fragments by ingestion.
func TestPersistDelayAndRecord(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "cam", time.Hour)
	m := liveMovie(t)
	c := mustOpen(t, srv, "cam", pmOpts{})
	go func() { _ = c.send(m.bytes()); c.closeBody() }()
	acks, err := c.all()
	if err != nil {
		t.Fatal(err)
	}
	frags := srv.Fragments("cam")
	if len(frags) != len(m.clusters) {
		t.Fatalf("%d fragments, want %d: %v", len(frags), len(m.clusters), describe(acks))
	}
	for _, f := range frags {
		if !f.Persisted || f.PersistedAt.Sub(f.ReceivedAt) < kvslocal.DefaultPersistDelay {
			t.Fatalf("fragment %d: persisted %v at %v, received at %v; want PERSISTED %v after RECEIVED",
				f.Timecode, f.Persisted, f.PersistedAt, f.ReceivedAt, kvslocal.DefaultPersistDelay)
		}
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(frags[0].File), "fragments.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) != len(frags) {
		t.Fatalf("%d lines in fragments.jsonl for %d fragments", len(lines), len(frags))
	}
	for i, l := range lines {
		var f kvslocal.Fragment
		if err := json.Unmarshal(l, &f); err != nil || !f.Persisted || f.PersistedAt.IsZero() || f.Timecode != frags[i].Timecode {
			t.Fatalf("line %d: %s (%v)", i, l, err)
		}
	}
	live := srv.LiveView("cam")
	if len(live) != len(frags) {
		t.Fatalf("live view has %d fragments, want %d", len(live), len(frags))
	}
	for i, f := range live {
		// liveMovie starts a minute ago and is sent at once.
		if f.Lag() < 50*time.Second || f.Lag() > 2*time.Minute || (i > 0 && f.Ingested.Before(live[i-1].Ingested)) {
			t.Fatalf("live fragment %d: %+v lag %v", i, f, f.Lag())
		}
	}
}

// A fragment whose PERSISTED never went out (the connection died first)
// is written to fragments.jsonl as not persisted when its connection ends.
func TestRecordUnpersistedOnDrop(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{PersistDelay: time.Hour})
	newStream(t, srv, "cam", time.Hour)
	m := liveMovie(t)
	c := mustOpen(t, srv, "cam", pmOpts{})
	go func() { _ = c.send(m.bytes()); c.closeBody() }()
	if _, err := srv.WaitFragments(t.Context(), "cam", len(m.clusters)); err != nil {
		t.Fatal(err)
	}
	frags := srv.Fragments("cam")
	dir := filepath.Dir(frags[0].File)
	srv.Close()
	b, err := os.ReadFile(filepath.Join(dir, "fragments.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) != len(frags) {
		t.Fatalf("%d lines for %d fragments:\n%s", len(lines), len(frags), b)
	}
	for _, l := range lines {
		var f kvslocal.Fragment
		if err := json.Unmarshal(l, &f); err != nil || f.Persisted {
			t.Fatalf("line %s (%v): want persisted false", l, err)
		}
	}
}

// A poisoned fragment is refused on every attempt up to its count, on new
// connections too, and then accepted.
func TestPoisonFragment(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "cam", time.Hour)
	if err := srv.PoisonFragment("cam", kvslocal.ErrInternal, 2); err != nil {
		t.Fatal(err)
	}
	m := liveMovie(t)
	for attempt := 1; attempt <= 3; attempt++ {
		c := mustOpen(t, srv, "cam", pmOpts{})
		go func() { _ = c.send(m.bytes()); c.closeBody() }()
		acks, err := c.all()
		if err != nil {
			t.Fatal(err)
		}
		last := acks[len(acks)-1]
		refused := last.EventType == "ERROR" && last.ErrorId == kvslocal.ErrInternal && last.tc() == int64(m.clusters[0].tc)
		if refused != (attempt <= 2) {
			t.Fatalf("attempt %d: %v", attempt, describe(acks))
		}
		if err := srv.WaitDisconnected(t.Context(), "cam"); err != nil {
			t.Fatal(err)
		}
	}
	if p := srv.Poisoned("cam"); p[int64(m.clusters[0].tc)] != 2 || len(p) != 1 {
		t.Fatalf("Poisoned: %v", p)
	}
}

// StallOpenAcks silences the open connection only: it keeps reading, and
// the next connection is acknowledged as usual.
func TestStallOpenAcks(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "cam", time.Hour)
	m := liveMovie(t)
	c := mustOpen(t, srv, "cam", pmOpts{})
	if err := srv.StallOpenAcks("cam"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.send(m.bytes()); c.closeBody() }()
	acks, err := c.all()
	if err != nil || len(acks) != 0 {
		t.Fatalf("stalled connection sent %v (%v)", describe(acks), err)
	}
	if n := len(srv.Fragments("cam")); n != len(m.clusters) {
		t.Fatalf("stalled connection read %d fragments, want %d", n, len(m.clusters))
	}
	c2 := mustOpen(t, srv, "cam", pmOpts{})
	go func() { _ = c2.send(m.shift(10_000).bytes()); c2.closeBody() }()
	acks, err = c2.all()
	if err != nil || len(acks) == 0 {
		t.Fatalf("next connection: %v (%v)", describe(acks), err)
	}
}

// With the server clock moved, a request signed by the host clock is
// refused as expired, and the answer's Date header carries the server's
// time, from which a producer can learn the offset.
func TestClockOffsetAndDate(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	newStream(t, srv, "cam", time.Hour)
	srv.SetClockOffset(10 * time.Minute)
	c, resp := openPutMedia(t, srv, "cam", pmOpts{})
	if c != nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("PutMedia signed 10 min behind the server: %v", resp)
	}
	typ, msg := apiErrorOf(t, resp)
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil || !strings.HasPrefix(typ, "InvalidSignatureException") || !strings.Contains(msg, "Signature expired") {
		t.Fatalf("answer %s %q, Date %q (%v)", typ, msg, resp.Header.Get("Date"), err)
	}
	if off := time.Until(date); off < 9*time.Minute || off > 11*time.Minute {
		t.Fatalf("Date header %v is %v off the host clock, want about 10 min", date, off)
	}
	c = mustOpen(t, srv, "cam", pmOpts{signTime: time.Now().Add(10 * time.Minute)})
	c.closeBody()
	if _, err := c.all(); err != nil {
		t.Fatal(err)
	}
}

// With ReplaceOpenConnection a second PutMedia ends the open one instead
// of being refused.
func TestReplaceOpenConnection(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{ReplaceOpenConnection: true})
	newStream(t, srv, "s", time.Hour)
	m := liveMovie(t)
	first := mustOpen(t, srv, "s", pmOpts{})
	if err := first.send(m.header()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(t.Context(), "s", func(st kvslocal.State) bool { return st.Connected }); err != nil {
		t.Fatal(err)
	}
	second := mustOpen(t, srv, "s", pmOpts{})
	if _, err := first.all(); err == nil {
		// The old response ends without an ERROR; a cut connection may
		// also surface as a read error. Either way it is over.
		t.Log("old connection ended cleanly")
	}
	go func() { _ = second.send(m.bytes()); second.closeBody() }()
	acks, err := second.all()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Fragments("s")); n != len(m.clusters) || srv.Connections("s") != 2 {
		t.Fatalf("%d fragments on %d connections: %v", n, srv.Connections("s"), describe(acks))
	}
}
