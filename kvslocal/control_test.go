package kvslocal_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/aws/smithy-go"

	"github.com/kvscamd/kvscamd/kvslocal"
)

const testRegion = "eu-west-1"

func sdkClient(srv *kvslocal.Server, cred aws.Credentials) *kinesisvideo.Client {
	return kinesisvideo.NewFromConfig(aws.Config{
		Region:       testRegion,
		Credentials:  credentials.StaticCredentialsProvider{Value: cred},
		BaseEndpoint: aws.String(srv.URL),
		// Keep failures fast and visible: the SDK would retry 5xx.
		RetryMaxAttempts: 1,
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// apiCode returns the error code and HTTP status of an SDK error.
func apiCode(t *testing.T, err error) (string, string, int) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an API error", err)
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), ae.ErrorMessage(), status
}

func TestControlPlaneWithSDK(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{Region: testRegion})
	c := sdkClient(srv, srv.Credentials())
	ctx := ctxT(t)

	_, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("describe missing stream: got %v, want ResourceNotFoundException", err)
	}
	if code, _, status := apiCode(t, err); status != 404 || code != "ResourceNotFoundException" {
		t.Fatalf("describe missing stream: %s %d", code, status)
	}

	out, err := c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{
		StreamName: aws.String("cam-1"), DataRetentionInHours: aws.Int32(24), MediaType: aws.String("video/h264"), DeviceName: aws.String("dev"),
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if !strings.HasPrefix(aws.ToString(out.StreamARN), "arn:aws:kinesisvideo:"+testRegion+":") {
		t.Fatalf("ARN %q", aws.ToString(out.StreamARN))
	}
	_, err = c.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-1")})
	var inUse *types.ResourceInUseException
	if !errors.As(err, &inUse) {
		t.Fatalf("create twice: got %v, want ResourceInUseException", err)
	}

	d, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	si := d.StreamInfo
	if si.Status != types.StatusActive || aws.ToInt32(si.DataRetentionInHours) != 24 || aws.ToString(si.StreamARN) != aws.ToString(out.StreamARN) ||
		aws.ToString(si.MediaType) != "video/h264" || si.CreationTime == nil || time.Since(*si.CreationTime) > time.Minute {
		t.Fatalf("describe: %+v", si)
	}
	// By ARN too.
	if _, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamARN: out.StreamARN}); err != nil {
		t.Fatalf("describe by ARN: %v", err)
	}

	ep, err := c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("cam-1"), APIName: types.APINamePutMedia})
	if err != nil || aws.ToString(ep.DataEndpoint) != srv.URL {
		t.Fatalf("GetDataEndpoint: %v %v", aws.ToString(ep.DataEndpoint), err)
	}
	_, err = c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("cam-1"), APIName: "PUT_SOMETHING"})
	var inv *types.InvalidArgumentException
	if !errors.As(err, &inv) {
		t.Fatalf("bad APIName: got %v, want InvalidArgumentException", err)
	}
	_, err = c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("nope"), APIName: types.APINamePutMedia})
	if !errors.As(err, &nf) {
		t.Fatalf("endpoint of missing stream: got %v", err)
	}

	ls, err := c.ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	if err != nil || len(ls.StreamInfoList) != 1 || aws.ToString(ls.StreamInfoList[0].StreamName) != "cam-1" {
		t.Fatalf("list: %+v %v", ls, err)
	}

	if err := srv.Throttle("cam-1", 1); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")})
	var lim *types.ClientLimitExceededException
	if !errors.As(err, &lim) {
		t.Fatalf("throttled describe: got %v, want ClientLimitExceededException", err)
	}
	if _, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")}); err != nil {
		t.Fatalf("describe after the throttled call: %v", err)
	}

	if _, err := c.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: out.StreamARN}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("cam-1")}); !errors.As(err, &nf) {
		t.Fatalf("describe deleted: %v", err)
	}
}

func TestControlPlaneRateLimit(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now } // frozen: no tokens come back
	srv := kvslocal.Start(t, kvslocal.Options{Now: clock})
	if _, err := srv.CreateStream("s", 0); err != nil {
		t.Fatal(err)
	}
	c := sdkClient(srv, srv.Credentials())
	ctx := ctxT(t)
	for i := 0; i < kvslocal.DefaultControlCallsPerSec; i++ {
		if _, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("s")}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("s")})
	if code, _, status := apiCode(t, err); code != "ClientLimitExceededException" || status != 400 {
		t.Fatalf("call over the rate: %s %d", code, status)
	}
}

func TestAuthRejections(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{Region: testRegion})
	if _, err := srv.CreateStream("s", time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	describe := func(cred aws.Credentials) error {
		_, err := sdkClient(srv, cred).DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("s")})
		return err
	}
	good := srv.Credentials()
	if err := describe(good); err != nil {
		t.Fatalf("good long-lived key: %v", err)
	}
	issued := srv.IssueCredentials(time.Hour)
	if !issued.CanExpire || issued.SessionToken == "" || time.Until(issued.Expires) < 59*time.Minute {
		t.Fatalf("issued credentials: %+v", issued)
	}
	if err := describe(issued); err != nil {
		t.Fatalf("issued key: %v", err)
	}

	cases := []struct {
		name    string
		cred    aws.Credentials
		code    string
		message string
	}{
		{"unknown key", aws.Credentials{AccessKeyID: "AKIAUNKNOWN000000000", SecretAccessKey: good.SecretAccessKey}, "UnrecognizedClientException", kvslocal.MsgTokenInvalid},
		{"bad secret", aws.Credentials{AccessKeyID: good.AccessKeyID, SecretAccessKey: "wrong"}, "InvalidSignatureException", kvslocal.MsgSignatureInvalid},
		{"bad token", aws.Credentials{AccessKeyID: issued.AccessKeyID, SecretAccessKey: issued.SecretAccessKey, SessionToken: "forged"}, "UnrecognizedClientException", kvslocal.MsgTokenInvalid},
		{"missing token", aws.Credentials{AccessKeyID: issued.AccessKeyID, SecretAccessKey: issued.SecretAccessKey}, "UnrecognizedClientException", kvslocal.MsgTokenInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, status := apiCode(t, describe(tc.cred))
			if code != tc.code || msg != tc.message || status != http.StatusForbidden {
				t.Fatalf("got %s %q %d, want %s %q 403", code, msg, status, tc.code, tc.message)
			}
		})
	}

	t.Run("wrong region", func(t *testing.T) {
		c := kinesisvideo.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: good}, BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1})
		_, err := c.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String("s")})
		if code, _, status := apiCode(t, err); code != "InvalidSignatureException" || status != 403 {
			t.Fatalf("got %s %d", code, status)
		}
	})

	t.Run("expired token", func(t *testing.T) {
		short := srv.IssueCredentials(time.Hour)
		if err := describe(short); err != nil {
			t.Fatal(err)
		}
		srv.ExpireCredentials()
		code, msg, status := apiCode(t, describe(short))
		if code != "ExpiredTokenException" || msg != kvslocal.MsgTokenExpired || status != 403 {
			t.Fatalf("got %s %q %d", code, msg, status)
		}
		// The long-lived key is not affected; fresh credentials work.
		if err := describe(good); err != nil {
			t.Fatal(err)
		}
		if err := describe(srv.IssueCredentials(time.Minute)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEndpointDown(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	if _, err := srv.CreateStream("s", 0); err != nil {
		t.Fatal(err)
	}
	c := sdkClient(srv, srv.Credentials())
	ctx := ctxT(t)
	call := func() error {
		_, err := c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("s"), APIName: types.APINamePutMedia})
		return err
	}
	srv.Down(kvslocal.Unavailable, 0)
	if code, _, status := apiCode(t, call()); status != 503 || code != "ServiceUnavailableException" {
		t.Fatalf("down: %s %d", code, status)
	}
	srv.Up()
	if err := call(); err != nil {
		t.Fatal(err)
	}
	url := srv.URL
	srv.Down(kvslocal.Refused, 0)
	if err := call(); err == nil {
		t.Fatal("call while refused succeeded")
	}
	if conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://")); err == nil || !strings.Contains(err.Error(), "connection refused") {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("dial while refused: %v", err)
	}
	srv.Up()
	if srv.URL != url {
		t.Fatalf("URL changed from %s to %s", url, srv.URL)
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
}
