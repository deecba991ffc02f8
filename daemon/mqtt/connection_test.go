package mqtt_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
)

func presence(t *testing.T, m mqtt.Message) mqtt.Presence {
	t.Helper()
	var p mqtt.Presence
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatalf("presence %s: %v", m.Payload, err)
	}
	return p
}

// retainedPresence subscribes anew and returns the retained presence.
func retainedPresence(t *testing.T, b *mosquittotest.Broker, tp mqtt.Topics) mqtt.Presence {
	t.Helper()
	cl := newCloud(t, b, mosquittotest.Cloud, tp.Presence())
	return presence(t, cl.await(tp.Presence(), nil))
}

// Presence is retained online at connect; a clean stop publishes offline
// itself. Telemetry comes every interval with the fields that matter.
func TestPresenceAndTelemetry(t *testing.T) {
	r := newRig(t, rigOptions{features: allFeatures, telemetry: 200 * time.Millisecond})
	if p := retainedPresence(t, r.broker, r.tp); !p.Online || p.Version != "test-1" || len(p.Streams) != 1 || p.Streams[0] != "cam" {
		t.Errorf("retained presence at connect: %+v", p)
	}
	var tm mqtt.Telemetry
	for range 2 { // two in a row: it is periodic
		m := r.cloud.await(r.tp.Telemetry(), nil)
		if err := json.Unmarshal(m.Payload, &tm); err != nil {
			t.Fatal(err)
		}
	}
	if len(tm.Streams) != 1 || tm.Streams[0].Name != "cam" || tm.Streams[0].State == "" || tm.CredentialsState == "" || tm.Time.IsZero() {
		t.Errorf("telemetry: %+v", tm)
	}
	var raw map[string]any
	m := r.cloud.await(r.tp.Telemetry(), nil)
	_ = json.Unmarshal(m.Payload, &raw)
	s := raw["streams"].([]any)[0].(map[string]any)
	for _, k := range []string{"state", "fps", "bitrate_bps", "ring_fill", "oldest_unacked_age", "live_lag", "frames_dropped", "fragments_lost", "fragments_set_aside"} {
		if _, ok := s[k]; !ok {
			t.Errorf("telemetry stream lacks %s: %v", k, s)
		}
	}
	for _, k := range []string{"clock_synchronized", "credentials_state", "uptime"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("telemetry lacks %s: %v", k, raw)
		}
	}

	r.stop()
	if p := retainedPresence(t, r.broker, r.tp); p.Online {
		t.Errorf("retained presence after a clean stop: %+v", p)
	}
	if r.runner.State() != "stopped" {
		t.Errorf("state after stop: %s", r.runner.State())
	}
}

// After the broker restarts (losing every session and subscription), the
// runner reconnects after jittered, growing waits, subscribes again and
// announces itself again.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	minB, maxB := 200*time.Millisecond, 800*time.Millisecond
	r := newRig(t, rigOptions{features: allFeatures, minBackoff: minB, maxBackoff: maxB})
	if resp := r.command(`{"op":"ping"}`); resp.Status != mqtt.StatusSucceeded {
		t.Fatalf("ping before: %+v", resp)
	}

	r.broker.Stop()
	deadline := time.Now().Add(waitFor)
	for len(r.runner.Stats().Delays) < 4 { // connection lost + three refused attempts
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect attempts: %+v", r.runner.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition with a deadline
	}
	if r.stream().FramesCaptured == 0 {
		t.Error("capture stopped with the broker")
	}
	r.broker.Start()
	r.waitConnected(2)

	delays := r.runner.Stats().Delays
	bound := minB
	jittered := false
	for i, d := range delays {
		if d < bound/2 || d > bound {
			t.Errorf("wait %d = %s, want within [%s, %s]", i+1, d, bound/2, bound)
		}
		if d != bound && d != bound/2 {
			jittered = true
		}
		bound = min(2*bound, maxB)
	}
	if !jittered {
		t.Errorf("waits %v are not randomised", delays)
	}

	// The broker forgot everything: subscriptions and presence are back.
	cl := newCloud(t, r.broker, mosquittotest.Cloud, "$aws/#", "kvscamd/#")
	r.cloud = cl
	if p := presence(t, cl.await(r.tp.Presence(), nil)); !p.Online {
		t.Errorf("presence after the restart: %+v", p)
	}
	if resp := r.command(`{"op":"ping"}`); resp.Status != mqtt.StatusSucceeded {
		t.Errorf("ping after the restart: %+v", resp)
	}
	// Jobs and shadow subscriptions too (what they sent at connect may
	// have gone before this client subscribed).
	r.cloud.publish(r.tp.Jobs("notify-next"), execution("job-after", 1, `{"operation":"kvscamd.ping"}`), false)
	r.cloud.await(r.tp.Jobs("start-next"), nil)
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":100,"state":{"streams":{"cam":{"mode":"record"}}}}`, false)
	if u := r.nextUpdate(); u.State.Reported.Streams["cam"]["mode"] != "record" {
		t.Errorf("shadow after the restart: %+v", u)
	}
}

// A command the daemon is slow with holds only the commands worker: the
// connection keeps serving the shadow and telemetry meanwhile.
func TestSlowHandlerDoesNotStall(t *testing.T) {
	r := newRig(t, rigOptions{features: allFeatures, telemetry: 200 * time.Millisecond})
	r.cloud.await(r.tp.Shadow("get"), nil)
	r.cloud.publish(r.tp.Shadow("get/rejected"), `{"code":404,"message":"no shadow"}`, false)
	r.accept(r.nextUpdate(), 1)

	started, release := r.daemon.holdOp("restart")
	r.cloud.publish("$aws/commands/things/"+thing+"/executions/slow-1/request/json", `{"op":"restart","stream":"cam"}`, false)
	<-started
	// While restart is held: a shadow delta is applied and reported,
	// telemetry flows, and more commands queue without blocking.
	r.cloud.publish(r.tp.Shadow("update/delta"), `{"version":2,"state":{"streams":{"cam":{"mode":"record"}}}}`, false)
	if u := r.nextUpdate(); u.State.Reported.Streams["cam"]["mode"] != "record" {
		t.Errorf("shadow while a command is slow: %+v", u)
	}
	held := time.Now()
	r.cloud.await(r.tp.Telemetry(), func(m mqtt.Message) bool {
		var tm mqtt.Telemetry
		return json.Unmarshal(m.Payload, &tm) == nil && tm.Time.After(held)
	})
	r.cloud.publish("$aws/commands/things/"+thing+"/executions/after-slow/request/json", `{"op":"ping"}`, false)
	if got := r.cloud.count(r.tp.CommandResponse("+")); got != 0 {
		t.Errorf("%d answers while the first command is held", got)
	}
	release()
	var slow mqtt.CommandResponse
	_ = json.Unmarshal(r.cloud.await(r.tp.CommandResponse("slow-1"), nil).Payload, &slow)
	if slow.Status != mqtt.StatusSucceeded {
		t.Errorf("slow command: %+v", slow)
	}
	r.cloud.await(r.tp.CommandResponse("after-slow"), nil)
}
