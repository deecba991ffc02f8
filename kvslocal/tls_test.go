package kvslocal_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvscamd/kvscamd/kvslocal"
)

func TestTLS(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{TLS: true})
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") || len(srv.CACertPEM()) == 0 {
		t.Fatalf("URL %s", srv.URL)
	}
	newStream(t, srv, "s", time.Hour)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}
	c := kinesisvideo.NewFromConfig(aws.Config{
		Region: testRegion, Credentials: credentials.StaticCredentialsProvider{Value: srv.Credentials()},
		BaseEndpoint: aws.String(srv.URL), HTTPClient: hc, RetryMaxAttempts: 1,
	})
	ep, err := c.GetDataEndpoint(ctxT(t), &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("s"), APIName: types.APINamePutMedia})
	if err != nil || aws.ToString(ep.DataEndpoint) != srv.URL {
		t.Fatalf("GetDataEndpoint: %v %v", ep, err)
	}
	m := liveMovie(t)
	pc := mustOpen(t, srv, "s", pmOpts{client: hc})
	go func() { _ = pc.send(m.bytes()); pc.closeBody() }()
	acks, err := pc.all()
	if err != nil || len(acks) != 3*len(m.clusters) {
		t.Fatalf("over TLS: %v %v", describe(acks), err)
	}
	// An untrusting client is refused by TLS itself.
	if _, err := http.Post(srv.URL+"/describeStream", "application/json", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted client: %v", err)
	}
}
