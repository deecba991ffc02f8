package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvscamd/kvscamd/credentials/identity"
)

func provisioningFile(dir, extra string) string {
	return `region = "eu-west-1"
state_dir = "` + dir + `"
[credentials]
endpoint = "abc.credentials.iot.eu-west-1.amazonaws.com"
role_alias = "kvscamd"
[mqtt]
endpoint = "abc-ats.iot.eu-west-1.amazonaws.com:8883"
[provisioning]
template = "fleet"
claim_cert = "/etc/kvscamd/claim/claim.pem.crt"
claim_key = "/etc/kvscamd/claim/claim.pem.key"
` + extra
}

// Before provisioning, the thing name, the device certificate and the
// stream names the cloud will give are not required.
func TestProvisioningPending(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse([]byte(provisioningFile(dir, "")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("pending configuration refused: %v", err)
	}
	if !c.ProvisioningPending() {
		t.Fatal("not pending without an identity")
	}
	p := c.Provisioning
	if p.Dir != filepath.Join(dir, IdentityDirName) || p.Endpoint != c.MQTT.Endpoint || p.KeyType != KeyECDSAP256 {
		t.Fatalf("defaults not applied: %+v", p)
	}
}

// Once provisioned, the identity replaces thing_name and the device
// certificate, and streams without a name follow the new thing name.
func TestProvisionedIdentityApplies(t *testing.T) {
	dir := t.TempDir()
	st := identity.Store{Dir: filepath.Join(dir, IdentityDirName)}
	if _, err := st.PendingKey(func() ([]byte, error) { return []byte("key"), nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(identity.Identity{ThingName: "cam-00ab", CertificateID: "c1"}, []byte("cert")); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(`thing_name = "from-the-file"` + "\n" + provisioningFile(dir, "")))
	if err != nil {
		t.Fatal(err)
	}
	if c.ProvisioningPending() || c.Identity == nil {
		t.Fatal("identity not found")
	}
	if c.ThingName != "cam-00ab" || c.Streams[0].Name != "cam-00ab" {
		t.Fatalf("thing %q, stream %q", c.ThingName, c.Streams[0].Name)
	}
	if c.Credentials.Cert != st.CertFile() || c.Credentials.Key != st.KeyFile() || c.MQTT.Cert != st.CertFile() {
		t.Fatalf("certificates: %+v %+v", c.Credentials, c.MQTT)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestProvisioningValidation(t *testing.T) {
	for _, tc := range []struct{ edit, key, msg string }{
		{`claim_cert = ""`, "provisioning.claim_cert", "required"},
		{`key_type = "dsa"`, "provisioning.key_type", `must be one of "ecdsa-p256", "rsa-2048"`},
		{`renew_before = "10m"`, "provisioning.renew_before", "at least 1h0m0s"},
		{`dir = "relative"`, "provisioning.dir", "absolute"},
		{`endpoint = "no-port"`, "provisioning.endpoint", "host:port"},
	} {
		body := provisioningFile(t.TempDir(), "")
		k := strings.SplitN(tc.edit, " ", 2)[0]
		if strings.Contains(body, "\n"+k+" = ") && strings.Contains(body, "[provisioning]\n") {
			body = strings.Replace(body, "claim_cert = \"/etc/kvscamd/claim/claim.pem.crt\"\n", "", boolInt(k == "claim_cert"))
		}
		body += tc.edit + "\n"
		c, err := Parse([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", tc.edit, err)
		}
		err = c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %s: …%s…", tc.edit, err, tc.key, tc.msg)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
