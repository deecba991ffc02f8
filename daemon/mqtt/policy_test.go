package mqtt_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
)

// thingVar is the policy variable that resolves to the connected thing.
const thingVar = "${iot:Connection.Thing.ThingName}"

const arnPrefix = "arn:aws:iot:*:*:"

type policy struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   any
		Resource any
	}
}

func list(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, e.(string))
		}
		return out
	}
	return nil
}

// The shipped policy allows exactly what the code uses, derived from the
// code's own topic list, and nothing broader.
func TestPolicyCoversExactlyTheTopicsUsed(t *testing.T) {
	data, err := os.ReadFile("iot-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var p policy
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("iot-policy.json: %v", err)
	}
	u := mqtt.Topics{Thing: thingVar}.Use(allFeatures)
	// In a topic ARN one id segment is "*"; in a topicfilter ARN the
	// filter's "+" is a literal character.
	topic := func(ts []string) []string {
		var out []string
		for _, s := range ts {
			out = append(out, arnPrefix+"topic/"+strings.ReplaceAll(s, "/+/", "/*/"))
		}
		return out
	}
	var filters []string
	for _, f := range u.Subscribe {
		filters = append(filters, arnPrefix+"topicfilter/"+f)
	}
	want := map[string][]string{
		"iot:Connect":                   {arnPrefix + "client/" + thingVar},
		"iot:Subscribe":                 filters,
		"iot:Receive":                   topic(u.Subscribe),
		"iot:Publish":                   topic(u.Publish),
		"iot:RetainPublish":             topic(u.Retain),
		"iot:AssumeRoleWithCertificate": {arnPrefix + "rolealias/kvscamd"},
	}
	got := map[string][]string{}
	for _, st := range p.Statement {
		if st.Effect != "Allow" {
			t.Errorf("statement %s: effect %s; the policy only allows", st.Sid, st.Effect)
		}
		for _, a := range list(st.Action) {
			got[a] = append(got[a], list(st.Resource)...)
		}
	}
	for action, res := range want {
		g := slices.Clone(got[action])
		slices.Sort(g)
		w := slices.Clone(res)
		slices.Sort(w)
		if !slices.Equal(g, w) {
			t.Errorf("%s:\n got %q\nwant %q", action, g, w)
		}
		delete(got, action)
	}
	for action := range got {
		t.Errorf("policy allows %s, which the daemon does not use", action)
	}
	for _, st := range p.Statement {
		for _, r := range list(st.Resource) {
			rest := strings.TrimPrefix(r, arnPrefix)
			if strings.Contains(rest, "#") || strings.HasSuffix(rest, "*") || strings.Contains(rest, "**") ||
				(!strings.Contains(rest, thingVar) && !strings.HasPrefix(rest, "rolealias/")) {
				t.Errorf("resource %s is broader than one thing's topics", r)
			}
		}
	}
}

// Every topic fits AWS IoT's limits: 256 bytes, and 8 segments for the
// daemon's own topics (AWS's reserved $aws topics are longer by design);
// Conn sends at most MaxFiltersPerSubscribe filters per SUBSCRIBE.
func TestTopicLimits(t *testing.T) {
	name := strings.Repeat("n", 128) // the longest thing name
	u := mqtt.Topics{Thing: name}.Use(allFeatures)
	for _, tp := range append(u.Subscribe, u.Publish...) {
		tp = strings.ReplaceAll(tp, "+", strings.Repeat("i", 64))
		if len(tp) > 256 {
			t.Errorf("%s: %d bytes", tp, len(tp))
		}
		if n := strings.Count(tp, "/") + 1; n > 8 && !strings.HasPrefix(tp, "$aws/") {
			t.Errorf("%s: %d segments", tp, n)
		}
	}
}
