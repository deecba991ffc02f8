package provision_test

import (
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kvscamd/kvscamd/daemon/provision"
)

type policyStatement struct {
	Effect   string
	Action   any
	Resource any
}

func list(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, len(x))
		for i, s := range x {
			out[i], _ = s.(string)
		}
		return out
	}
	return nil
}

// The shipped claim policy allows exactly what provisioning uses: the
// topics it publishes and receives on and the filters it subscribes to,
// nothing broader (no wildcard other than the client id).
func TestClaimPolicy(t *testing.T) {
	data, err := os.ReadFile("claim-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Statement []policyStatement }
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	const arn = "arn:aws:iot:REGION:ACCOUNT:"
	granted := map[string][]string{} // action → resources
	for _, s := range doc.Statement {
		if s.Effect != "Allow" {
			t.Fatalf("unexpected effect %q", s.Effect)
		}
		for _, a := range list(s.Action) {
			for _, r := range list(s.Resource) {
				if strings.Contains(r, "*") && r != arn+"client/*" {
					t.Errorf("%s on %s: wildcard broader than needed", a, r)
				}
				granted[a] = append(granted[a], strings.TrimPrefix(r, arn))
			}
		}
	}
	pub, sub := provision.Topics("TEMPLATE")
	want := map[string][]string{"iot:Connect": {"client/*"}}
	for _, p := range pub {
		want["iot:Publish"] = append(want["iot:Publish"], "topic/"+p)
	}
	for _, s := range sub {
		want["iot:Receive"] = append(want["iot:Receive"], "topic/"+s)
		want["iot:Subscribe"] = append(want["iot:Subscribe"], "topicfilter/"+s)
	}
	// Publish and Receive share a statement: the union is what is granted.
	union := append(append([]string{}, want["iot:Publish"]...), want["iot:Receive"]...)
	want["iot:Publish"], want["iot:Receive"] = union, union
	for a, rs := range want {
		g := append([]string{}, granted[a]...)
		sort.Strings(g)
		w := append([]string{}, rs...)
		sort.Strings(w)
		if !slices.Equal(g, w) {
			t.Errorf("%s: policy grants %v, provisioning uses %v", a, g, w)
		}
	}
	for a := range granted {
		if _, ok := want[a]; !ok {
			t.Errorf("policy grants %s, which provisioning does not use", a)
		}
	}
}
