package mqtt_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/status"
)

type update struct {
	State struct {
		Reported struct {
			Streams map[string]map[string]any     `json:"streams"`
			Refused map[string]*mqtt.StatusReason `json:"refused"`
		} `json:"reported"`
	} `json:"state"`
	Version     *int64 `json:"version"`
	ClientToken string `json:"clientToken"`
}

func (r *rig) nextUpdate() update {
	r.t.Helper()
	m := r.cloud.await(r.tp.Shadow("update"), nil)
	var u update
	if err := json.Unmarshal(m.Payload, &u); err != nil {
		r.t.Fatalf("shadow update: %v: %s", err, m.Payload)
	}
	return u
}

func (r *rig) accept(u update, version int64) {
	r.cloud.publish(r.tp.Shadow("update/accepted"), map[string]any{"version": version, "clientToken": u.ClientToken}, false)
}

// The shadow service's side of get, 404, delta, old versions, 409 and
// a refused desired state.
func TestShadow(t *testing.T) {
	r := newRig(t, rigOptions{features: mqtt.Features{Shadow: true}})

	// On connect: get. The shadow does not exist: the device creates it
	// with what it has.
	r.cloud.await(r.tp.Shadow("get"), nil)
	r.cloud.publish(r.tp.Shadow("get/rejected"), `{"code":404,"message":"No shadow exists with name: 'kvscamd'"}`, false)
	u := r.nextUpdate()
	if u.Version != nil || u.State.Reported.Streams["cam"]["mode"] != "live" || u.State.Reported.Streams["cam"]["capture"] != true {
		t.Fatalf("create: %+v", u)
	}
	r.accept(u, 1)

	// A desired change arrives as a delta: applied through set, echoed.
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":2,"state":{"streams":{"cam":{"mode":"record","fps":15}}}}`, false)
	u = r.nextUpdate()
	if got := u.State.Reported.Streams["cam"]; got["mode"] != "record" || got["fps"] != 15.0 || u.Version == nil || *u.Version != 2 {
		t.Fatalf("after delta: %+v", u)
	}
	if u.State.Reported.Refused["cam"] != nil {
		t.Errorf("refused after an applied delta: %+v", u.State.Reported.Refused["cam"])
	}
	if s := r.stream(); s.Mode != "record" {
		t.Errorf("delta not applied: mode %s", s.Mode)
	}
	r.accept(u, 3)

	// An older delta is ignored; the newer one after it is applied.
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":2,"state":{"streams":{"cam":{"mode":"live"}}}}`, false)
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":4,"state":{"streams":{"cam":{"capture":false}}}}`, false)
	u = r.nextUpdate()
	if got := u.State.Reported.Streams["cam"]; got["capture"] != false || got["mode"] != nil || *u.Version != 4 {
		t.Fatalf("after the newer delta: %+v", u)
	}
	if s := r.stream(); s.Mode != "record" || s.Capture {
		t.Errorf("old delta applied or new one not: mode %s capture %v", s.Mode, s.Capture)
	}

	// 409: the desired state changed under the update: get again and
	// apply what is there.
	r.cloud.publish(r.tp.Shadow("update/rejected"), fmt.Sprintf(`{"code":409,"message":"Version conflict","clientToken":%q}`, u.ClientToken), false)
	r.cloud.await(r.tp.Shadow("get"), nil)
	r.cloud.publish(r.tp.Shadow("get/accepted"), `{"version":6,"state":{"desired":{"streams":{"cam":{"capture":true}}},"delta":{"streams":{"cam":{"capture":true}}}}}`, false)
	u = r.nextUpdate()
	if got := u.State.Reported.Streams["cam"]; got["capture"] != true || *u.Version != 6 {
		t.Fatalf("after 409 and get: %+v", u)
	}
	if !r.stream().Capture {
		t.Error("desired capture after the 409 not applied")
	}
	r.accept(u, 7)

	// Out of range: refused with the daemon's reason, nothing changes.
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":8,"state":{"streams":{"cam":{"fps":1000},"ghost":{"mode":"live"}}}}`, false)
	u = r.nextUpdate()
	if ref := u.State.Reported.Refused["cam"]; ref == nil || ref.ReasonCode != status.CodeInvalidConfig {
		t.Errorf("fps 1000 not refused: %+v", u)
	}
	if ref := u.State.Reported.Refused["ghost"]; ref == nil || ref.ReasonCode != status.CodeUnknownStream {
		t.Errorf("unknown stream not refused: %+v", u.State.Reported.Refused)
	}
	if _, echoed := u.State.Reported.Streams["cam"]["fps"]; echoed {
		t.Errorf("refused fps reported as applied: %+v", u.State.Reported.Streams)
	}
	// A desired key the daemon does not know is refused too.
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":9,"state":{"streams":{"cam":{"zoom":2}}}}`, false)
	u = r.nextUpdate()
	if ref := u.State.Reported.Refused["cam"]; ref == nil || ref.ReasonCode != status.CodeBadRequest {
		t.Errorf("unknown key not refused: %+v", u.State.Reported.Refused)
	}
}
