package mqtt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
)

// MaxRequestBytes bounds a command request or job document: anything
// larger is refused unread.
const MaxRequestBytes = 16 << 10

// RemoteOps are the operations MQTT accepts. reload is not one: it reads
// a file on the device, which a remote operator cannot have edited.
var RemoteOps = []string{status.OpPing, status.OpStatus, status.OpCapture, status.OpSet, status.OpUpload, status.OpRestart, status.OpRenew}

// Job operations and the command each one runs.
const (
	JobUpload = "kvscamd.upload"
	JobPing   = "kvscamd.ping"
)

// wireCommand is a request as sent: times stay text so that a missing
// one and a malformed one get their own answer.
type wireCommand struct {
	Op     string `json:"op"`
	Stream string `json:"stream"`
	On     *bool  `json:"on"`
	From   string `json:"from"`
	To     string `json:"to"`
	status.Settings
}

type wireJob struct {
	Operation string `json:"operation"`
	Stream    string `json:"stream"`
	From      string `json:"from"`
	To        string `json:"to"`
}

func refuse(code, format string, args ...any) *status.Error {
	return &status.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// strictDecode reads exactly one JSON object with only known fields.
func strictDecode(what string, payload []byte, v any) *status.Error {
	if len(payload) > MaxRequestBytes {
		return refuse(status.CodeBadRequest, "%s of %d bytes exceeds the %d-byte limit", what, len(payload), MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse(status.CodeBadRequest, "%s is not valid: %v; send one JSON object like {\"op\":\"ping\"}", what, err)
	}
	if dec.More() {
		return refuse(status.CodeBadRequest, "%s has data after its JSON object; send exactly one object", what)
	}
	return nil
}

// DecodeCommand turns a command request into a status.Command, or the
// reason it is refused. Nothing is run here.
func DecodeCommand(payload []byte) (status.Command, *status.Error) {
	var w wireCommand
	if e := strictDecode("command", payload, &w); e != nil {
		return status.Command{}, e
	}
	return w.command()
}

func (w wireCommand) command() (status.Command, *status.Error) {
	c := status.Command{Op: w.Op, Stream: w.Stream, On: w.On, Settings: w.Settings}
	has := map[string]bool{
		"stream": w.Stream != "", "on": w.On != nil, "from": w.From != "", "to": w.To != "",
		"settings": !w.Settings.Empty(),
	}
	allow := func(op string, keys ...string) *status.Error {
		ok := map[string]bool{}
		for _, k := range keys {
			ok[k] = true
		}
		for _, k := range []string{"stream", "on", "from", "to", "settings"} {
			if has[k] && !ok[k] {
				name := k
				if k == "settings" {
					name = "stream settings"
				}
				return refuse(status.CodeBadArgument, "%s does not take %s", op, name)
			}
		}
		return nil
	}
	need := func(op, key, example string) *status.Error {
		if !has[key] {
			return refuse(status.CodeBadArgument, "%s needs %q, e.g. %s", op, key, example)
		}
		return nil
	}
	var e *status.Error
	switch w.Op {
	case status.OpPing, status.OpStatus, status.OpRenew:
		e = allow(w.Op)
	case status.OpCapture:
		e = first(allow(w.Op, "stream", "on"), need(w.Op, "stream", `"stream":"cam-0001"`), need(w.Op, "on", `"on":true`))
	case status.OpRestart:
		e = first(allow(w.Op, "stream"), need(w.Op, "stream", `"stream":"cam-0001"`))
	case status.OpSet:
		e = first(allow(w.Op, "stream", "settings"), need(w.Op, "stream", `"stream":"cam-0001"`))
		if e == nil && !has["settings"] {
			e = refuse(status.CodeBadArgument, "set needs at least one of mode, upload_rate_limit, keyframe_interval, bitrate, fps, width, height")
		}
		if e == nil {
			e = checkSettings(w.Settings)
		}
	case status.OpUpload:
		e = first(allow(w.Op, "stream", "from", "to"), need(w.Op, "stream", `"stream":"cam-0001"`),
			need(w.Op, "from", `"from":"2026-01-02T15:04:05Z"`), need(w.Op, "to", `"to":"2026-01-02T15:09:05Z"`))
		if e == nil {
			c.From, c.To, e = uploadRange(w.From, w.To)
		}
	case "":
		e = refuse(status.CodeBadRequest, "command has no \"op\"; use one of %s", strings.Join(RemoteOps, ", "))
	default:
		e = refuse(status.CodeUnknownOp, "unknown op %q; over MQTT use one of %s", w.Op, strings.Join(RemoteOps, ", "))
	}
	if e != nil {
		return status.Command{}, e
	}
	return c, nil
}

func first(es ...*status.Error) *status.Error {
	for _, e := range es {
		if e != nil {
			return e
		}
	}
	return nil
}

// checkSettings refuses values no configuration could hold, before the
// daemon's own validation checks the ranges against the stream.
func checkSettings(s status.Settings) *status.Error {
	for _, f := range []struct {
		name string
		v    *int
	}{{"bitrate", s.Bitrate}, {"fps", s.FPS}, {"width", s.Width}, {"height", s.Height}} {
		if f.v != nil && *f.v <= 0 {
			return refuse(status.CodeBadArgument, "set: %s must be positive, got %d", f.name, *f.v)
		}
	}
	return nil
}

func uploadRange(from, to string) (time.Time, time.Time, *status.Error) {
	f, err := time.Parse(time.RFC3339, from)
	if err != nil {
		return time.Time{}, time.Time{}, refuse(status.CodeBadArgument, "upload: from %q is not an RFC 3339 time like 2026-01-02T15:04:05Z", from)
	}
	t, err := time.Parse(time.RFC3339, to)
	if err != nil {
		return time.Time{}, time.Time{}, refuse(status.CodeBadArgument, "upload: to %q is not an RFC 3339 time like 2026-01-02T15:09:05Z", to)
	}
	if !t.After(f) {
		return time.Time{}, time.Time{}, refuse(status.CodeBadArgument, "upload: to (%s) must be after from (%s)", to, from)
	}
	return f, t, nil
}

// DecodeJob turns a job document into the command it runs, or the reason
// it is refused.
func DecodeJob(doc []byte) (status.Command, *status.Error) {
	var w wireJob
	if e := strictDecode("job document", doc, &w); e != nil {
		return status.Command{}, e
	}
	switch w.Operation {
	case JobPing:
		return wireCommand{Op: status.OpPing, Stream: w.Stream, From: w.From, To: w.To}.command()
	case JobUpload:
		return wireCommand{Op: status.OpUpload, Stream: w.Stream, From: w.From, To: w.To}.command()
	case "":
		return status.Command{}, refuse(status.CodeBadRequest, "job document has no \"operation\"; use %s or %s", JobUpload, JobPing)
	}
	return status.Command{}, refuse(status.CodeUnknownOp, "unknown job operation %q; use %s or %s", w.Operation, JobUpload, JobPing)
}
