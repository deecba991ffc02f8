package mqtt_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials/testpki"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
)

// check's line: ok, a TLS failure and a policy failure each say so.
func TestCheck(t *testing.T) {
	b := mosquittotest.Start(t)
	good := b.ClientFiles(thing)
	m := config.MQTT{Enabled: true, Endpoint: b.Addr(), KeepAlive: config.Duration(30 * time.Second),
		Commands: true, Shadow: true, Jobs: true, Cert: good.Cert, Key: good.Key, CA: b.CAFile}

	line, err := mqtt.Check(t.Context(), m, thing)
	if err != nil || !strings.HasPrefix(line, "mqtt: ok connected") || !strings.Contains(line, "11 topic filters") {
		t.Errorf("good: %s (%v)", line, err)
	}

	// The broker's certificate does not chain to the CA configured.
	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := other.WriteCert(wrongCA); err != nil {
		t.Fatal(err)
	}
	bad := m
	bad.CA = wrongCA
	line, err = mqtt.Check(t.Context(), bad, thing)
	var e *mqtt.Error
	if !errors.As(err, &e) || e.Stage != mqtt.StageTLS || !strings.Contains(line, "mqtt: FAIL TLS") {
		t.Errorf("wrong CA: %s (%v)", line, err)
	}

	// A policy refusal cannot be shown with mosquitto: it grants a
	// subscription its ACL denies (and then delivers nothing), where AWS
	// IoT closes the connection, which Check reports as a policy failure.

	// Nobody listens.
	b.Stop()
	line, err = mqtt.Check(t.Context(), m, thing)
	if err == nil || !strings.Contains(line, "mqtt: FAIL") {
		t.Errorf("broker down: %s", line)
	}
}
