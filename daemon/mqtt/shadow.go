package mqtt

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"

	"github.com/kvscamd/kvscamd/daemon/status"
)

// Shadow error codes that change what the device does.
const (
	shadowNotFound = 404
	shadowConflict = 409
)

// ShadowStream is what the shadow may ask of one stream: the keys of set,
// plus capture.
type ShadowStream struct {
	status.Settings
	Capture *bool `json:"capture,omitempty"`
}

type shadowDoc struct {
	State struct {
		Desired *shadowState `json:"desired"`
		Delta   *shadowState `json:"delta"`
	} `json:"state"`
	Version int64 `json:"version"`
}

// shadowState is the part of a shadow document the daemon reads.
type shadowState struct {
	Streams map[string]json.RawMessage `json:"streams"`
}

type deltaDoc struct {
	State   shadowState `json:"state"`
	Version int64       `json:"version"`
}

type shadowError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// shadow follows the named shadow: desired stream settings are applied
// through the daemon and echoed (or refused, with the reason) in
// reported. All its state belongs to its worker goroutine.
type shadow struct {
	r       *Runner
	q       queue
	version int64 // newest shadow version seen; older documents are ignored
	token   int
}

func newShadow(r *Runner) *shadow { return &shadow{r: r, q: newQueue("shadow", r.log)} }

func (s *shadow) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.q.c:
			s.handle(ctx, m)
		}
	}
}

func (s *shadow) clientToken() string {
	s.token++
	return "kvscamd-" + strconv.Itoa(s.token)
}

func (s *shadow) get(ctx context.Context) {
	if err := s.r.publish(ctx, s.r.topics.Shadow("get"), map[string]string{"clientToken": s.clientToken()}, false); err != nil {
		s.r.log.Warn("mqtt shadow get not sent", "err", err)
	}
}

func (s *shadow) handle(ctx context.Context, m Message) {
	t := s.r.topics
	log := s.r.log.With("shadow", ShadowName)
	switch m.Topic {
	case "":
		s.get(ctx)
	case t.Shadow("get/accepted"):
		var d shadowDoc
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			log.Warn("mqtt shadow document unreadable", "err", err)
			return
		}
		if d.Version <= s.version {
			log.Debug("mqtt shadow document older than one applied; ignored", "version", d.Version)
			return
		}
		s.version = d.Version
		var want map[string]json.RawMessage
		if d.State.Delta != nil {
			want = d.State.Delta.Streams
		}
		s.report(ctx, s.apply(ctx, want), true)
	case t.Shadow("get/rejected"):
		var e shadowError
		_ = json.Unmarshal(m.Payload, &e)
		if e.Code == shadowNotFound {
			log.Info("mqtt shadow does not exist yet; creating it with the reported state")
			s.version = 0
			s.report(ctx, applied{}, true)
			return
		}
		log.Warn("mqtt shadow get refused", "code", e.Code, "message", e.Message)
	case t.Shadow("update/delta"):
		var d deltaDoc
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			log.Warn("mqtt shadow delta unreadable", "err", err)
			return
		}
		if d.Version <= s.version {
			log.Debug("mqtt shadow delta older than one applied; ignored", "version", d.Version)
			return
		}
		s.version = d.Version
		s.report(ctx, s.apply(ctx, d.State.Streams), false)
	case t.Shadow("update/accepted"):
		var d struct {
			Version int64 `json:"version"`
		}
		if json.Unmarshal(m.Payload, &d) == nil && d.Version > s.version {
			s.version = d.Version
		}
	case t.Shadow("update/rejected"):
		var e shadowError
		_ = json.Unmarshal(m.Payload, &e)
		if e.Code == shadowConflict {
			log.Info("mqtt shadow changed under our update; reading it again")
			s.get(ctx)
			return
		}
		log.Warn("mqtt shadow update refused", "code", e.Code, "message", e.Message)
	}
}

// streamReport is one stream's entry in reported.streams; values are the
// desired ones that were applied, plus mode and capture as they are.
type streamReport map[string]any

// applied is what one pass over desired did.
type applied struct {
	streams map[string]streamReport
	refused map[string]*StatusReason // nil value: clear an old refusal
}

// apply gives every stream's desired settings to the daemon, each stream
// on its own so that one refusal does not hold back the others.
func (s *shadow) apply(ctx context.Context, want map[string]json.RawMessage) applied {
	a := applied{streams: map[string]streamReport{}, refused: map[string]*StatusReason{}}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		raw := want[name]
		var ss ShadowStream
		if e := strictDecode("desired state of stream "+name, raw, &ss); e != nil {
			a.refused[name] = reason(e)
			continue
		}
		if ss.Settings.Empty() && ss.Capture == nil {
			continue
		}
		if e := checkSettings(ss.Settings); e != nil {
			a.refused[name] = reason(e)
			continue
		}
		if !ss.Settings.Empty() {
			if _, err := s.r.o.Daemon.Do(ctx, status.Command{Op: status.OpSet, Stream: name, Settings: ss.Settings}); err != nil {
				a.refused[name] = reason(err)
				continue
			}
		}
		if ss.Capture != nil {
			if _, err := s.r.o.Daemon.Do(ctx, status.Command{Op: status.OpCapture, Stream: name, On: ss.Capture}); err != nil {
				a.refused[name] = reason(err)
				continue
			}
		}
		var echo streamReport
		_ = json.Unmarshal(raw, &echo)
		a.streams[name] = echo
		a.refused[name] = nil
	}
	return a
}

func reason(err error) *StatusReason {
	return &StatusReason{ReasonCode: status.CodeOf(err), ReasonDescription: truncate(err.Error(), maxReasonDescription)}
}

// report publishes reported: what apply did and, when full, mode and
// capture of every stream as the daemon has them.
func (s *shadow) report(ctx context.Context, a applied, full bool) {
	streams := map[string]streamReport{}
	if full {
		for _, st := range s.r.o.Daemon.Status().Streams {
			streams[st.Name] = streamReport{"mode": st.Mode, "capture": st.Capture}
		}
	}
	for name, echo := range a.streams {
		if streams[name] == nil {
			streams[name] = streamReport{}
		}
		for k, v := range echo {
			streams[name][k] = v
		}
	}
	reported := map[string]any{"streams": streams}
	if len(a.refused) > 0 {
		reported["refused"] = a.refused
	}
	body := map[string]any{
		"state":       map[string]any{"reported": reported},
		"clientToken": s.clientToken(),
	}
	if s.version > 0 {
		// With the version, a desired state written meanwhile makes this
		// update fail with 409 instead of being reported over.
		body["version"] = s.version
	}
	if err := s.r.publish(ctx, s.r.topics.Shadow("update"), body, false); err != nil {
		s.r.log.Warn("mqtt shadow update not sent", "err", err)
	}
}
