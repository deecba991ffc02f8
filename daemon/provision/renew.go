package provision

import (
	"context"
	"fmt"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
	"github.com/kvscamd/kvscamd/credentials/identity"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/internal/clock"
)

// renewCheck is how often the renewer looks at the certificate's expiry.
const renewCheck = time.Hour

// Due says whether id's certificate is within before of expiring at now.
// A certificate that lives no longer than before is renewed when a third
// of its life is left instead, so that a short-lived one is not renewed
// again at every check.
func Due(id *identity.Identity, now time.Time, before time.Duration) bool {
	if id.NotAfter.IsZero() {
		return false
	}
	if life := id.NotAfter.Sub(id.NotBefore); !id.NotBefore.IsZero() && life <= before {
		before = life / 3
	}
	return now.After(id.NotAfter.Add(-before))
}

// Renew replaces the device certificate now: a new key and CSR, signed
// and registered the way first boot did it, committed in one step. The
// session is authenticated with the claim certificate while it is there
// and valid (its client id is the serial number, so the daemon's own MQTT
// session, whose client id is the thing name, is not disconnected), else
// with the current device certificate, which must still be valid and
// whose policy must then allow the provisioning topics. TLS clients pick
// the new pair up at their next connection; uploads go on meanwhile with
// credentials from the old certificate.
func Renew(ctx context.Context, o Options) (*identity.Identity, error) {
	o.defaults()
	st := o.Config.Store()
	cur, err := st.Load()
	if err != nil {
		return nil, fmt.Errorf("provision: renew: %w", err)
	}
	who := Identity{Cert: o.Config.ClaimCert, Key: o.Config.ClaimKey}
	if _, err := certs.LoadKeyPair(who.Cert, who.Key, o.Clock.Now()); err != nil {
		o.Logger.Info("provision: renewing with the device certificate, the claim certificate is not usable", "err", err)
		who = Identity{Cert: st.CertFile(), Key: st.KeyFile(), ClientID: cur.ThingName}
	}
	id, err := Once(ctx, o, who)
	if err != nil {
		return nil, fmt.Errorf("provision: renew %s: %w", cur.ThingName, err)
	}
	if id.ThingName != cur.ThingName {
		o.Logger.Warn("provision: the renewal registered the device under another thing name; the daemon uses it after a restart",
			"old", cur.ThingName, "new", id.ThingName)
	}
	o.Logger.Info("provision: device certificate renewed", "thing", id.ThingName, "certificate", id.CertificateID, "not_after", id.NotAfter)
	return id, nil
}

// RunRenewal renews the certificate whenever it comes within
// RenewBefore of expiring, checking at start and every hour, retrying a
// failed renewal with back-off. It ends with ctx (nil error).
func RunRenewal(ctx context.Context, o Options) error {
	o.defaults()
	st := o.Config.Store()
	b := backoff.Backoff{Min: retryMin, Max: retryMax, Jitter: backoff.Full}
	for {
		wait := renewCheck
		id, err := st.Load()
		switch {
		case err != nil:
			o.Logger.Warn("provision: cannot read the identity to check its expiry", "err", err)
		case Due(id, o.Clock.Now(), o.Config.RenewBefore.Std()):
			if _, err := Renew(ctx, o); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				wait = b.Next()
				o.Logger.Warn("provision: certificate renewal failed", "thing", id.ThingName, "not_after", id.NotAfter,
					"retry_in", wait, "err", err)
			} else {
				b.Reset()
			}
		}
		if clock.Sleep(ctx, o.Clock, wait) != nil {
			return nil
		}
	}
}
