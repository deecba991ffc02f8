package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
)

// The runnable prints what a client needs, and that works with the SDK.
func TestRunPrintsEndpointAndCredentials(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	dir := t.TempDir()
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-dir", dir, "-stream", "cam-0001:24h",
			"-access-key", "AKIAKVSLOCAL000DEMO0", "-secret-key", "demo-secret", "-region", "eu-west-1", "-log-level", "error"}, pw, io.Discard)
		pw.Close()
	}()
	env := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		env[k] = v
		if k == "AWS_REGION" {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if env["AWS_ACCESS_KEY_ID"] != "AKIAKVSLOCAL000DEMO0" || !strings.HasPrefix(env["KVSLOCAL_URL"], "http://127.0.0.1:") {
		t.Fatalf("printed %v", env)
	}
	c := kinesisvideo.NewFromConfig(aws.Config{Region: env["AWS_REGION"], BaseEndpoint: aws.String(env["KVSLOCAL_URL"]),
		Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")})
	out, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-0001")})
	if err != nil || aws.ToInt32(out.StreamInfo.DataRetentionInHours) != 24 {
		t.Fatalf("describe: %v %v", out, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	_, err = os.Stat(filepath.Join(dir))
	if err != nil {
		t.Fatal(err)
	}
}

// -control serves the fault endpoint: faults arm on known streams, bad
// requests say what is wrong, records come back as JSON.
func TestControlEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-stream", "cam-0001:24h", "-control", "127.0.0.1:0",
			"-fail", "cam-0001:5000:2", "-persist-delay", "1s", "-log-level", "error"}, pw, io.Discard)
		pw.Close()
	}()
	var ctl string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if k, v, _ := strings.Cut(sc.Text(), "="); k == "KVSLOCAL_CONTROL" {
			ctl = v
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if ctl == "" {
		t.Fatal("no KVSLOCAL_CONTROL printed")
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/poison?stream=cam-0001&code=5001", 204},
		{"POST", "/poison?stream=nope&code=5001", 400},
		{"POST", "/fail?stream=cam-0001&code=x", 400},
		{"POST", "/stall?stream=cam-0001", 204},
		{"POST", "/release?stream=cam-0001", 204},
		{"POST", "/release?stream=cam-0001", 400},
		{"POST", "/clock?offset=-10m", 204},
		{"POST", "/down?mode=sideways", 400},
		{"GET", "/fragments?stream=cam-0001", 200},
		{"GET", "/live?stream=nope", 404},
	} {
		req, _ := http.NewRequest(tc.method, ctl+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
