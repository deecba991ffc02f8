package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
	"github.com/kvscamd/kvscamd/daemon/mqtt"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/provision"
	"github.com/kvscamd/kvscamd/daemon/sdnotify"
)

const provisionAbout = `
Gives this device its own AWS IoT identity with fleet provisioning by
claim, as configured in [provisioning]: generates the device key (it never
leaves the device), has AWS IoT sign a certificate for it and registers the
thing with the provisioning template, connected with the claim
certificate. The key, certificate and thing name are stored in
provisioning.dir. kvscamd run does the same by itself when the device has
no identity yet. With -renew, replaces the current device certificate with
a new one now, connected with the current certificate.`

// cmdProvision provisions once (retrying until it succeeds or is
// interrupted), or renews with -renew.
func cmdProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("provision", "[-config FILE] [-renew]", provisionAbout)
	cfgPath := configFlag(fs)
	renew := fs.Bool("renew", false, "renew the device certificate now")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if !cfg.Provisioning.Enabled() {
		return fmt.Errorf("provision: %s has no [provisioning] template; add a [provisioning] table (see the README)", *cfgPath)
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel.Slog())
	log := newLogger(stderr, level)
	o := provision.Options{Config: cfg.Provisioning, Logger: log}
	if *renew {
		id, err := provision.Renew(ctx, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "renewed: thing %s, certificate %s, valid until %s\n", id.ThingName, id.CertificateID, id.NotAfter.Format(time.RFC3339))
		return nil
	}
	if cfg.Identity != nil {
		fmt.Fprintf(stdout, "already provisioned: thing %s, certificate %s, valid until %s (use -renew to replace the certificate)\n",
			cfg.Identity.ThingName, cfg.Identity.CertificateID, cfg.Identity.NotAfter.Format(time.RFC3339))
		return nil
	}
	id, err := provision.Run(ctx, o, func(s string) { fmt.Fprintln(stdout, s) })
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "provisioned: thing %s, certificate %s, valid until %s\n", id.ThingName, id.CertificateID, id.NotAfter.Format(time.RFC3339))
	return nil
}

// provisionFirst runs fleet provisioning before the service starts, when
// the configuration asks for it and the device has no identity yet, and
// returns the configuration reloaded with the new identity. The service
// manager hears READY (a first boot may wait long for the cloud, longer
// than a start timeout), a STATUS line per attempt and watchdog pings:
// waiting for the network is not a reason to restart.
func provisionFirst(ctx context.Context, path string, cfg *config.Config, log *slog.Logger) (*config.Config, error) {
	if !cfg.ProvisioningPending() {
		return cfg, nil
	}
	n := sdnotify.FromEnv()
	notify := func(states ...string) {
		if err := n.Notify(states...); err != nil {
			log.Warn("cannot notify the service manager", "err", err)
		}
	}
	notify(sdnotify.Ready, sdnotify.Status("provisioning this device with template "+cfg.Provisioning.Template))
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	if wd, ok := sdnotify.WatchdogInterval(); ok {
		go func() {
			t := time.NewTicker(wd / 2)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					notify(sdnotify.Watchdog)
				}
			}
		}()
	}
	log.Info("provision: this device has no identity yet; provisioning", "template", cfg.Provisioning.Template,
		"endpoint", cfg.Provisioning.Endpoint, "dir", cfg.Provisioning.Dir)
	if _, err := provision.Run(pctx, provision.Options{Config: cfg.Provisioning, Logger: log},
		func(s string) { notify(sdnotify.Status(s)) }); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, nil
		}
		return nil, err
	}
	next, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if next.Identity == nil {
		return nil, fmt.Errorf("provision: the identity stored in %s was not found again on reload", cfg.Provisioning.Dir)
	}
	return next, nil
}

// checkProvisioning is check's provisioning line: the identity when there
// is one, else whether the claim certificate is usable and accepted by
// the endpoint (it connects, and subscribes to nothing).
func checkProvisioning(ctx context.Context, cfg *config.Config) (string, error) {
	p := cfg.Provisioning
	if id := cfg.Identity; id != nil {
		if !id.NotAfter.IsZero() && time.Now().After(id.NotAfter) {
			err := errors.New("expired")
			return fmt.Sprintf("provisioning: FAIL thing %s: the device certificate expired at %s; remove %s to provision again with the claim certificate",
				id.ThingName, id.NotAfter.Format(time.RFC3339), filepath.Join(p.Dir, "current")), err
		}
		return fmt.Sprintf("provisioning: ok thing %s, certificate %s valid until %s, renewed %s before", id.ThingName, id.CertificateID,
			id.NotAfter.Format(time.RFC3339), p.RenewBefore), nil
	}
	if _, err := certs.LoadKeyPair(p.ClaimCert, p.ClaimKey, time.Now()); err != nil {
		return fmt.Sprintf("provisioning: FAIL the claim certificate: %v; install the fleet's claim certificate and key at claim_cert and claim_key", err), err
	}
	conn, err := mqtt.Connect(ctx, mqtt.ConnOptions{
		Endpoint: p.Endpoint, ClientID: "kvscamd-check", KeepAlive: time.Minute,
		TLS: func() (*tls.Config, error) {
			return certs.ClientTLSConfig(certs.Files{Cert: p.ClaimCert, Key: p.ClaimKey, CA: p.CA}, "", time.Now())
		},
	})
	if err != nil {
		return fmt.Sprintf("provisioning: FAIL not provisioned yet, and %s refuses the claim certificate: %v", p.Endpoint, err), err
	}
	conn.Close()
	return fmt.Sprintf("provisioning: ok not provisioned yet; %s accepts the claim certificate, and kvscamd run will register this device with template %s",
		p.Endpoint, p.Template), nil
}
