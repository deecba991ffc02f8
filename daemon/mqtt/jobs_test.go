package mqtt_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/status"
)

func (r *rig) jobUpdate(id string) mqtt.JobUpdate {
	r.t.Helper()
	m := r.cloud.await("$aws/things/"+thing+"/jobs/+/update", nil)
	var u mqtt.JobUpdate
	if err := json.Unmarshal(m.Payload, &u); err != nil {
		r.t.Fatal(err)
	}
	if m.Topic != r.tp.Job(id, "update") {
		r.t.Fatalf("job update on %s (%+v), want one for %s", m.Topic, u, id)
	}
	return u
}

func execution(id string, n int64, doc string) map[string]any {
	return map[string]any{"execution": map[string]any{
		"jobId": id, "status": "QUEUED", "executionNumber": n, "versionNumber": 1, "jobDocument": json.RawMessage(doc),
	}}
}

// The jobs service's side: notify-next, start-next, progress, success,
// an unknown operation refused, duplicates ignored.
func TestJobs(t *testing.T) {
	r := newRig(t, rigOptions{features: mqtt.Features{Jobs: true}})
	startNext := r.tp.Jobs("start-next")

	// On connect the device asks for pending work; there is none.
	r.cloud.await(startNext, nil)
	r.cloud.publish(r.tp.Jobs("start-next/accepted"), `{"timestamp":1}`, false)

	// A job is queued: notify-next, then start-next hands it over.
	r.cloud.publish(r.tp.Jobs("notify-next"), execution("job-ping", 1, `{"operation":"kvscamd.ping"}`), false)
	r.cloud.await(startNext, nil)
	r.cloud.publish(r.tp.Jobs("start-next/accepted"), execution("job-ping", 1, `{"operation":"kvscamd.ping"}`), false)
	if u := r.jobUpdate("job-ping"); u.Status != mqtt.StatusInProgress || u.StatusDetails["progress"] == "" {
		t.Errorf("first update: %+v", u)
	}
	if u := r.jobUpdate("job-ping"); u.Status != mqtt.StatusSucceeded || u.StatusDetails["message"] != "pong" || u.ExecutionNumber != 1 {
		t.Errorf("final update: %+v", u)
	}

	// After a job the device asks for the next: an unknown operation.
	r.cloud.await(startNext, nil)
	r.cloud.publish(r.tp.Jobs("start-next/accepted"), execution("job-odd", 1, `{"operation":"kvscamd.reboot"}`), false)
	if u := r.jobUpdate("job-odd"); u.Status != mqtt.StatusRejected || u.StatusDetails["reasonCode"] != status.CodeUnknownOp ||
		!strings.Contains(u.StatusDetails["reason"], "kvscamd.reboot") {
		t.Errorf("unknown operation: %+v", u)
	}
	r.cloud.await(startNext, nil)

	// Duplicates of the finished job are ignored: the next update is for
	// the upload job that follows them.
	r.cloud.publish(r.tp.Jobs("notify-next"), execution("job-ping", 1, `{"operation":"kvscamd.ping"}`), false)
	r.cloud.publish(r.tp.Jobs("start-next/accepted"), execution("job-ping", 1, `{"operation":"kvscamd.ping"}`), false)
	waitStored(t, r)
	doc := `{"operation":"kvscamd.upload","stream":"cam","from":"` + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) +
		`","to":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	r.cloud.publish(r.tp.Jobs("start-next/accepted"), execution("job-upload", 1, doc), false)
	if u := r.jobUpdate("job-upload"); u.Status != mqtt.StatusInProgress {
		t.Errorf("upload progress: %+v", u)
	}
	u := r.jobUpdate("job-upload")
	if u.Status != mqtt.StatusSucceeded || u.StatusDetails["fragments"] == "" || u.StatusDetails["bytes"] == "" {
		t.Errorf("upload result: %+v", u)
	}
	if n := r.daemon.calledFor(status.OpPing); n != 1 {
		t.Errorf("the ping job ran %d times", n)
	}

	// A document that is not valid is refused with the reason.
	r.cloud.publish(r.tp.Jobs("start-next/accepted"), execution("job-bad", 1, `{"operation":"kvscamd.upload","stream":"cam"}`), false)
	if u := r.jobUpdate("job-bad"); u.Status != mqtt.StatusRejected || !strings.Contains(u.StatusDetails["reason"], `needs "from"`) {
		t.Errorf("bad document: %+v", u)
	}
}
