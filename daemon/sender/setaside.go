package sender

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/internal/atomicfile"
)

// aside is a fragment set aside: it kept failing (or the service said its
// timestamp is in the future), so the stream went on without it. It stays
// in the ring, unacknowledged, and is tried again at NextTry, after the
// live video and the backlog.
type aside struct {
	ID       ring.ID   `json:"id"`
	Timecode int64     `json:"timecode"`
	Code     int       `json:"error_id"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Retries  int       `json:"retries"`
	NextTry  time.Time `json:"next_try"`
}

// setAsideFile is the JSON document kept at Config.SetAsideFile.
type setAsideFile struct {
	Version   int     `json:"version"`
	Fragments []aside `json:"fragments"`
}

const setAsideVersion = 1

// maxSetAsideRetryWait caps the growing wait between retries of a
// fragment set aside.
const maxSetAsideRetryWait = time.Hour

// futureRetryMargin: a fragment refused as stamped in the future (4007)
// is tried again this long after the service's clock, as far as the
// sender knows it, has passed the fragment's end.
const futureRetryMargin = time.Second

// loadSetAside reads the set-aside fragments persisted by an earlier run.
// A missing file is an empty set; a damaged one is reported and ignored
// (the fragments are then simply retried as backlog: no data is lost).
func (s *Sender) loadSetAside() {
	path := s.cfg.SetAsideFile
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var doc setAsideFile
	if err == nil {
		err = json.Unmarshal(b, &doc)
	}
	if err == nil && doc.Version != setAsideVersion {
		err = fmt.Errorf("version %d, want %d", doc.Version, setAsideVersion)
	}
	if err != nil {
		s.log.Warn("set-aside list unreadable; those fragments are retried as backlog", "file", path, "err", err)
		return
	}
	s.mu.Lock()
	for _, a := range doc.Fragments {
		a := a
		s.aside[a.ID] = &a
	}
	n := len(s.aside)
	s.mu.Unlock()
	if n > 0 {
		s.log.Warn("fragments set aside by an earlier run are retried after live video and the backlog", "count", n)
	}
}

// saveSetAsideLocked persists the set-aside list; s.mu is held. A failure
// is logged: after a restart the fragments would be retried as backlog,
// which costs attempts, not data.
func (s *Sender) saveSetAsideLocked() {
	path := s.cfg.SetAsideFile
	if path == "" {
		return
	}
	doc := setAsideFile{Version: setAsideVersion, Fragments: make([]aside, 0, len(s.aside))}
	for _, a := range s.aside {
		doc.Fragments = append(doc.Fragments, *a)
	}
	sort.Slice(doc.Fragments, func(i, j int) bool { return doc.Fragments[i].ID < doc.Fragments[j].ID })
	b, err := json.MarshalIndent(doc, "", " ")
	if err == nil {
		err = atomicfile.WriteFile(path, b, 0o640)
	}
	if err != nil {
		s.log.Error("set-aside list not saved", "file", path, "err", err)
	}
}

// setAside records that f goes aside for now (or, when it already is,
// that its retry failed: the next one comes later).
func (s *Sender) setAside(f *flight, code int, reason string) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.attempts, f.id)
	a, again := s.aside[f.id]
	if !again {
		a = &aside{ID: f.id, Timecode: f.timecode, Since: now}
		s.aside[f.id] = a
		s.setAsideTotal++
	} else {
		a.Retries++
	}
	a.Code, a.Reason = code, reason
	wait := s.cfg.SetAsideRetry << min(a.Retries, 10)
	a.NextTry = now.Add(min(wait, max(maxSetAsideRetryWait, s.cfg.SetAsideRetry)))
	if due := s.futureDue(f); code == 4007 && due.After(now) && due.Before(a.NextTry) {
		// Stamped ahead of the clock (recorded before the clock was
		// stepped back, say): the service takes it once its clock has
		// passed the fragment, which may be long before the back-off.
		a.NextTry = due
	}
	s.saveSetAsideLocked()
	level := "set aside"
	if again {
		level = "still failing"
	}
	s.log.Error("fragment "+level+"; the stream goes on without it and it is retried later (data kept)",
		"id", f.id, "timecode", f.timecode, "error_id", code, "reason", reason, "retry_at", a.NextTry)
}

// futureDue is when, on the device clock, the service's clock will have
// passed the end of f: the clock offset learnt from the service moves it.
func (s *Sender) futureDue(f *flight) time.Time {
	end := time.UnixMilli(f.timecode).Add(f.dur)
	return end.Add(-time.Duration(s.clockOffset.Load()) + futureRetryMargin)
}

// noteAttempt counts a retryable failure of f and reports whether f has
// now failed MaxAttempts times (and should be set aside).
func (s *Sender) noteAttempt(f *flight) (n int, exhausted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.aside[f.id]; ok {
		return 0, true // a retry of a set-aside fragment gets one attempt
	}
	s.attempts[f.id]++
	n = s.attempts[f.id]
	return n, n >= s.cfg.MaxAttempts
}

// dropAsideLocked forgets id (stored at last, or gone from the ring).
// s.mu is held.
func (s *Sender) dropAsideLocked(id ring.ID) {
	delete(s.attempts, id)
	if _, ok := s.aside[id]; ok {
		delete(s.aside, id)
		s.saveSetAsideLocked()
	}
}
