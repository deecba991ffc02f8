package mqtt

import (
	"fmt"
	"regexp"
	"strings"
)

// ShadowName is the named shadow the daemon follows.
const ShadowName = "kvscamd"

// idRE is what an execution or job id may be before it goes into a
// topic: AWS ids are at most 64 of these characters, and anything else
// (a "/", "+" or "#") would let a sender aim the answer elsewhere.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_:-]{1,64}$`)

// Topics are one thing's topics. AWS IoT defines the $aws ones; the
// presence and telemetry topics are the daemon's own, under kvscamd/.
type Topics struct{ Thing string }

// Commands (AWS IoT Device Management commands, JSON payloads).
func (t Topics) CommandRequests() string {
	return fmt.Sprintf("$aws/commands/things/%s/executions/+/request/json", t.Thing)
}

func (t Topics) CommandResponse(id string) string {
	return fmt.Sprintf("$aws/commands/things/%s/executions/%s/response/json", t.Thing, id)
}

// executionID returns the segment after "executions" in a request topic.
func executionID(topic string) string {
	seg := strings.Split(topic, "/")
	if len(seg) < 6 || seg[4] != "executions" {
		return ""
	}
	return seg[5]
}

// Shadow returns the named shadow's topic for op, e.g. "get" or
// "update/delta".
func (t Topics) Shadow(op string) string {
	return fmt.Sprintf("$aws/things/%s/shadow/name/%s/%s", t.Thing, ShadowName, op)
}

// Job topics: Jobs(op) for thing-wide ones ("notify-next",
// "start-next/accepted"), Job(id, op) for one job ("update").
func (t Topics) Jobs(op string) string { return fmt.Sprintf("$aws/things/%s/jobs/%s", t.Thing, op) }
func (t Topics) Job(id, op string) string {
	return fmt.Sprintf("$aws/things/%s/jobs/%s/%s", t.Thing, id, op)
}

func (t Topics) Presence() string  { return "kvscamd/" + t.Thing + "/presence" }
func (t Topics) Telemetry() string { return "kvscamd/" + t.Thing + "/telemetry" }

// Features selects the optional parts.
type Features struct{ Commands, Shadow, Jobs bool }

// Usage is every topic the daemon touches with the given features, for
// the IoT policy and its test. A "+" stands for one id segment.
type Usage struct {
	Subscribe []string // topic filters
	Publish   []string
	Retain    []string // published with the retain flag
}

// subscriptions returns the filters Runner subscribes, in order.
func (t Topics) subscriptions(f Features) []string {
	var s []string
	if f.Commands {
		s = append(s, t.CommandRequests())
	}
	if f.Shadow {
		s = append(s, t.Shadow("get/accepted"), t.Shadow("get/rejected"),
			t.Shadow("update/accepted"), t.Shadow("update/rejected"), t.Shadow("update/delta"))
	}
	if f.Jobs {
		s = append(s, t.Jobs("notify-next"), t.Jobs("start-next/accepted"), t.Jobs("start-next/rejected"),
			t.Job("+", "update/accepted"), t.Job("+", "update/rejected"))
	}
	return s
}

// Use returns what the daemon subscribes and publishes.
func (t Topics) Use(f Features) Usage {
	u := Usage{Subscribe: t.subscriptions(f), Retain: []string{t.Presence()}}
	u.Publish = append(u.Publish, t.Presence(), t.Telemetry())
	if f.Commands {
		u.Publish = append(u.Publish, t.CommandResponse("+"))
	}
	if f.Shadow {
		u.Publish = append(u.Publish, t.Shadow("get"), t.Shadow("update"))
	}
	if f.Jobs {
		u.Publish = append(u.Publish, t.Jobs("start-next"), t.Job("+", "update"))
	}
	return u
}
