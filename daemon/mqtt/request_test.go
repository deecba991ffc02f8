package mqtt_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
)

// Connect and Request are what a provisioning step needs: one session and
// AWS IoT's request/response on accepted and rejected topics. The test
// answers like the fleet provisioning service.
func TestRequestResponse(t *testing.T) {
	b := mosquittotest.Start(t)
	cl := newCloud(t, b, mosquittotest.Cloud, "$aws/#")
	conn, err := mqtt.Connect(t.Context(), mqtt.ConnOptions{
		Endpoint: b.Addr(), ClientID: mosquittotest.Cloud + "-device", KeepAlive: 30 * time.Second,
		TLS: func() (*tls.Config, error) { return b.ClientTLS(mosquittotest.Cloud), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const base = "$aws/certificates/create-from-csr/json"
	go func() {
		cl.await(base, nil)
		cl.publish(base+"/accepted", `{"certificateId":"abc","certificatePem":"-----BEGIN CERTIFICATE-----"}`, false)
	}()
	reply, ok, err := conn.Request(t.Context(), base, []byte(`{"certificateSigningRequest":"csr"}`), base+"/accepted", base+"/rejected")
	if err != nil || !ok || !strings.Contains(string(reply.Payload), `"certificateId":"abc"`) {
		t.Fatalf("accepted: %s %v %v", reply.Payload, ok, err)
	}
	const prov = "$aws/provisioning-templates/kvscamd/provision/json"
	go func() {
		cl.await(prov, nil)
		cl.publish(prov+"/rejected", `{"statusCode":400,"errorCode":"InvalidParameters","errorMessage":"bad"}`, false)
	}()
	reply, ok, err = conn.Request(t.Context(), prov, []byte(`{}`), prov+"/accepted", prov+"/rejected")
	if err != nil || ok || !strings.Contains(string(reply.Payload), "InvalidParameters") {
		t.Fatalf("rejected: %s %v %v", reply.Payload, ok, err)
	}
}
