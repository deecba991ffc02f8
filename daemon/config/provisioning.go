package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/kvscamd/kvscamd/credentials/identity"
)

// MinRenewBefore keeps renewal from running in a loop: a certificate
// that lives less than this is renewed at every check.
const MinRenewBefore = time.Hour

// IdentityDirName is the default identity directory below state_dir.
const IdentityDirName = "identity"

// applyIdentity fills the provisioning defaults and, when the device was
// provisioned, puts its thing name and certificate in place of the
// file's: from then on MQTT, the credentials provider and the default
// stream names use what the cloud registered.
func (c *Config) applyIdentity() {
	p := &c.Provisioning
	if !p.Enabled() {
		return
	}
	if p.Dir == "" && c.StateDir != "" {
		p.Dir = filepath.Join(c.StateDir, IdentityDirName)
	}
	if p.Endpoint == "" {
		p.Endpoint = c.MQTT.Endpoint
	}
	if p.CA == "" {
		p.CA = c.MQTT.CA
	}
	if p.CA == "" {
		p.CA = c.Credentials.CA
	}
	if p.Dir == "" {
		return
	}
	st := p.Store()
	id, err := st.Load()
	switch {
	case errors.Is(err, identity.ErrNotProvisioned):
		return
	case err != nil:
		c.IdentityErr = err
		return
	}
	c.Identity = id
	c.ThingName = id.ThingName
	c.Credentials.Cert, c.Credentials.Key = st.CertFile(), st.KeyFile()
	if c.MQTT.Cert == "" && c.MQTT.Key == "" {
		c.MQTT.Cert, c.MQTT.Key = st.CertFile(), st.KeyFile()
	}
}

func (p *Provisioning) validate(v *validator) {
	if !p.Enabled() {
		return
	}
	v.required("provisioning.claim_cert", p.ClaimCert, `"/etc/kvscamd/claim/claim.pem.crt" (the fleet's claim certificate)`)
	v.required("provisioning.claim_key", p.ClaimKey, `"/etc/kvscamd/claim/claim.pem.key"`)
	if v.required("provisioning.endpoint", p.Endpoint, `"xxxx-ats.iot.eu-west-1.amazonaws.com:8883" (or set mqtt.endpoint)`) {
		if _, port, err := net.SplitHostPort(p.Endpoint); err != nil || port == "" {
			v.add("provisioning.endpoint", "%q must be host:port; set e.g. endpoint = \"xxxx-ats.iot.eu-west-1.amazonaws.com:8883\"", p.Endpoint)
		}
	}
	if p.Dir != "" && !filepath.IsAbs(p.Dir) {
		v.add("provisioning.dir", "must be an absolute path, got %q; leave it out for <state_dir>/identity", p.Dir)
	}
	oneOf(v, "provisioning.key_type", p.KeyType, KeyECDSAP256, KeyRSA2048)
	if p.RenewBefore.Std() < MinRenewBefore {
		v.add("provisioning.renew_before", "must be at least %s, got %s; set renew_before = \"720h\"", MinRenewBefore, p.RenewBefore)
	}
	for k := range p.Parameters {
		if k == "" {
			v.add("provisioning.parameters", "a parameter has an empty name")
		}
	}
}

// CheckThingName reports a name AWS IoT would not accept as a thing name.
func CheckThingName(name string) error {
	if name == "" || len(name) > MaxThingNameLen || !thingNameRE.MatchString(name) {
		return fmt.Errorf("thing name %q is not valid: use 1..%d of a-z A-Z 0-9 : _ -", name, MaxThingNameLen)
	}
	return nil
}
