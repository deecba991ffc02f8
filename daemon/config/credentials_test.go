package config

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStaticSecretsNeverPrint(t *testing.T) {
	c, err := Parse([]byte(`
thing_name = "cam-1"
region = "eu-west-1"
[credentials]
source = "static"
access_key_id = "AKIAEXAMPLEKEY00001"
secret_access_key = "very-secret-key-value"
session_token = "very-secret-session-token"
`))
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CredentialsConfig()
	if cc.SecretAccessKey.Reveal() != "very-secret-key-value" || cc.SessionToken.Reveal() != "very-secret-session-token" || cc.ThingName != "cam-1" {
		t.Fatalf("mapping lost values: %v", cc)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v %+v %#v %s", *c, *c, c.Credentials, cc)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("cfg", "config", *c, "creds", cc)
	if strings.Contains(b.String(), "very-secret") {
		t.Fatalf("a secret was printed: %s", b.String())
	}
}
