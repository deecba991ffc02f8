package kvslocal_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
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
