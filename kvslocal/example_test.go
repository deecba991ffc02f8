package kvslocal_test

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// A server with a stream, temporary credentials for the code under test,
// and the SDK's control-plane client pointed at it.
func Example() {
	srv := kvslocal.New(kvslocal.Options{Region: "eu-west-1"})
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Close()
	if _, err := srv.CreateStream("cam-0001", 24*time.Hour); err != nil {
		panic(err)
	}
	creds := srv.IssueCredentials(15 * time.Minute)

	client := kinesisvideo.NewFromConfig(aws.Config{
		Region:       "eu-west-1",
		Credentials:  aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		BaseEndpoint: aws.String(srv.URL),
	})
	out, err := client.GetDataEndpoint(context.Background(), &kinesisvideo.GetDataEndpointInput{
		StreamName: aws.String("cam-0001"), APIName: types.APINamePutMedia,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(aws.ToString(out.DataEndpoint) == srv.URL)
	// A sender would now POST <endpoint>/putMedia; then, in a test:
	//	frags, err := srv.WaitFragments(ctx, "cam-0001", 3)
	fmt.Println(len(srv.Fragments("cam-0001")))
	// Output:
	// true
	// 0
}
