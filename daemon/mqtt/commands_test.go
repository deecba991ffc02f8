package mqtt_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/status"
)

var allFeatures = mqtt.Features{Commands: true, Shadow: true, Jobs: true}

// Every op, through the broker, against the real service.
func TestCommandOps(t *testing.T) {
	r := newRig(t, rigOptions{features: mqtt.Features{Commands: true}})

	resp := r.command(`{"op":"ping"}`)
	if resp.Status != mqtt.StatusSucceeded || resp.Result["message"].S != "pong" || resp.StatusReason != nil {
		t.Errorf("ping: %+v", resp)
	}

	resp = r.command(`{"op":"status"}`)
	var st status.Status
	if err := json.Unmarshal([]byte(resp.Result["status"].S), &st); err != nil || resp.Status != mqtt.StatusSucceeded {
		t.Fatalf("status: %+v (%v)", resp, err)
	}
	if st.Version != "test-1" || len(st.Streams) != 1 || st.Streams[0].Name != "cam" {
		t.Errorf("status result: %+v", st)
	}

	resp = r.command(`{"op":"capture","stream":"cam","on":false}`)
	if resp.Status != mqtt.StatusSucceeded || r.stream().Capture {
		t.Errorf("capture off: %+v, capture still %v", resp, r.stream().Capture)
	}
	if resp := r.command(`{"op":"capture","stream":"cam","on":true}`); resp.Status != mqtt.StatusSucceeded || !r.stream().Capture {
		t.Errorf("capture on: %+v", resp)
	}

	resp = r.command(`{"op":"set","stream":"cam","mode":"record","upload_rate_limit":"1MB/s","keyframe_interval":"1s"}`)
	if resp.Status != mqtt.StatusSucceeded {
		t.Fatalf("set: %+v", resp)
	}
	var changes []status.Change
	if err := json.Unmarshal([]byte(resp.Result["changes"].S), &changes); err != nil || len(changes) != 3 {
		t.Errorf("set changes: %s (%v)", resp.Result["changes"].S, err)
	}
	if s := r.stream(); s.Mode != "record" || s.Uploader.RateLimit != 1_000_000 {
		t.Errorf("after set: mode %s, rate limit %d", s.Mode, s.Uploader.RateLimit)
	}
	// fps restarts the file source: applied, and said so.
	resp = r.command(`{"op":"set","stream":"cam","fps":15}`)
	if resp.Status != mqtt.StatusSucceeded || !strings.Contains(resp.Result["changes"].S, "source restarted") {
		t.Errorf("set fps: %+v", resp)
	}

	// Record mode keeps fragments; upload queues those in the range.
	waitStored(t, r)
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	resp = r.command(map[string]any{"op": "upload", "stream": "cam", "from": from, "to": to})
	if resp.Status != mqtt.StatusSucceeded || resp.Result["fragments"].S == "" || resp.Result["fragments"].S == "0" || resp.Result["bytes"].S == "0" {
		t.Errorf("upload: %+v", resp)
	}

	resp = r.command(`{"op":"restart","stream":"cam"}`)
	if resp.Status != mqtt.StatusSucceeded || !strings.Contains(resp.Result["message"].S, "restarted") {
		t.Errorf("restart: %+v", resp)
	}
}

func waitStored(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for r.stream().FragmentsStored == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no fragment stored within %s: %+v", waitFor, r.stream())
		}
		time.Sleep(20 * time.Millisecond) // polling a real condition with a deadline
	}
}

// Every kind of bad command is REJECTED with a precise reason, and
// nothing changes.
func TestBadCommands(t *testing.T) {
	r := newRig(t, rigOptions{features: mqtt.Features{Commands: true}})
	before := r.stream()
	from, to := "2026-01-02T15:04:05Z", "2026-01-02T15:09:05Z"
	cases := []struct {
		name, payload, code, says string
	}{
		{"not JSON", `{"op":`, status.CodeBadRequest, "not valid"},
		{"not an object", `["ping"]`, status.CodeBadRequest, "not valid"},
		{"two objects", `{"op":"ping"}{"op":"ping"}`, status.CodeBadRequest, "after its JSON object"},
		{"unknown field", `{"op":"ping","force":true}`, status.CodeBadRequest, `unknown field "force"`},
		{"wrong type", `{"op":"set","stream":"cam","fps":"fast"}`, status.CodeBadRequest, "not valid"},
		{"no op", `{"stream":"cam"}`, status.CodeBadRequest, `no "op"`},
		{"unknown op", `{"op":"format-disk"}`, status.CodeUnknownOp, `unknown op "format-disk"`},
		{"reload is local only", `{"op":"reload"}`, status.CodeUnknownOp, `unknown op "reload"`},
		{"ping with args", `{"op":"ping","stream":"cam"}`, status.CodeBadArgument, "ping does not take stream"},
		{"capture without stream", `{"op":"capture","on":true}`, status.CodeBadArgument, `capture needs "stream"`},
		{"capture without on", `{"op":"capture","stream":"cam"}`, status.CodeBadArgument, `capture needs "on"`},
		{"capture unknown stream", `{"op":"capture","stream":"nope","on":false}`, status.CodeUnknownStream, `no stream "nope"`},
		{"capture with settings", `{"op":"capture","stream":"cam","on":false,"fps":5}`, status.CodeBadArgument, "capture does not take stream settings"},
		{"upload without from", `{"op":"upload","stream":"cam","to":"` + to + `"}`, status.CodeBadArgument, `upload needs "from"`},
		{"upload without to", `{"op":"upload","stream":"cam","from":"` + from + `"}`, status.CodeBadArgument, `upload needs "to"`},
		{"upload bad time", `{"op":"upload","stream":"cam","from":"yesterday","to":"` + to + `"}`, status.CodeBadArgument, "not an RFC 3339 time"},
		{"upload backwards", `{"op":"upload","stream":"cam","from":"` + to + `","to":"` + from + `"}`, status.CodeBadArgument, "must be after"},
		{"restart without stream", `{"op":"restart"}`, status.CodeBadArgument, `restart needs "stream"`},
		{"set nothing", `{"op":"set","stream":"cam"}`, status.CodeBadArgument, "at least one of"},
		{"set negative", `{"op":"set","stream":"cam","fps":-1}`, status.CodeBadArgument, "fps must be positive"},
		{"set fps out of range", `{"op":"set","stream":"cam","fps":1000,"mode":"record"}`, status.CodeInvalidConfig, "fps"},
		{"set bad mode", `{"op":"set","stream":"cam","mode":"fast"}`, status.CodeInvalidConfig, "mode"},
		{"set bad rate", `{"op":"set","stream":"cam","upload_rate_limit":"lots"}`, status.CodeBadArgument, "upload_rate_limit"},
		{"set unknown stream", `{"op":"set","stream":"nope","fps":10}`, status.CodeUnknownStream, `no stream "nope"`},
		{"too large", `{"op":"ping","stream":"` + strings.Repeat("x", mqtt.MaxRequestBytes) + `"}`, status.CodeBadRequest, "exceeds the 16384-byte limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := r.command(c.payload)
			if resp.Status != mqtt.StatusRejected || resp.StatusReason == nil || resp.StatusReason.ReasonCode != c.code ||
				!strings.Contains(resp.StatusReason.ReasonDescription, c.says) {
				t.Errorf("got %+v %+v, want REJECTED %s saying %q", resp, resp.StatusReason, c.code, c.says)
			}
			if resp.Result != nil {
				t.Errorf("a refused command has a result: %+v", resp.Result)
			}
		})
	}
	after := r.stream()
	if after.Mode != before.Mode || after.Capture != before.Capture || after.Uploader.RateLimit != before.Uploader.RateLimit {
		t.Errorf("refused commands changed the stream: before %+v after %+v", before, after)
	}
	for _, op := range []string{status.OpCapture, status.OpUpload, status.OpRestart, status.OpReload, "format-disk"} {
		if n := r.daemon.calledFor(op); n > 1 {
			t.Errorf("%d %s commands reached the daemon; only the unknown-stream one may", n, op)
		}
	}
}

// A redelivered execution gets its first answer again and does not run
// twice.
func TestCommandRedelivery(t *testing.T) {
	r := newRig(t, rigOptions{features: mqtt.Features{Commands: true}})
	first := r.commandID("exec-redelivered", `{"op":"capture","stream":"cam","on":false}`)
	if first.Status != mqtt.StatusSucceeded {
		t.Fatalf("first: %+v", first)
	}
	// Someone turns capture back on locally; a second run would turn it off.
	if _, err := r.svc.Do(t.Context(), status.Command{Op: status.OpCapture, Stream: "cam", On: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	again := r.commandID("exec-redelivered", `{"op":"capture","stream":"cam","on":false}`)
	if again.Status != first.Status || again.Result["message"] != first.Result["message"] {
		t.Errorf("redelivery answered %+v, first answer was %+v", again, first)
	}
	if n := r.daemon.calledFor(status.OpCapture); n != 1 {
		t.Errorf("capture ran %d times, want once", n)
	}
	if !r.stream().Capture {
		t.Error("the redelivered command ran again: capture is off")
	}
	// A refused one is answered the same way again.
	bad1 := r.commandID("exec-bad", `{"op":"nope"}`)
	bad2 := r.commandID("exec-bad", `{"op":"nope"}`)
	if bad1.Status != mqtt.StatusRejected || *bad1.StatusReason != *bad2.StatusReason {
		t.Errorf("refused twice: %+v / %+v", bad1, bad2)
	}
}

func ptr[T any](v T) *T { return &v }

// With commands off, the runner does not subscribe to them at all: an
// account without the feature may drop such connections.
func TestCommandsOff(t *testing.T) {
	u := mqtt.Topics{Thing: thing}.Use(mqtt.Features{Shadow: true, Jobs: true})
	for _, f := range append(u.Subscribe, u.Publish...) {
		if strings.Contains(f, "/commands/") {
			t.Errorf("commands off, yet %s is used", f)
		}
	}
}
