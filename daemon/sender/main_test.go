package sender

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/kvslocal"
)

// endpointEnv makes the test binary serve a local endpoint instead of
// running tests, so a benchmark can keep the endpoint's CPU out of its
// own process.
const endpointEnv = "SENDER_TEST_SERVE_ENDPOINT"

func TestMain(m *testing.M) {
	if os.Getenv(endpointEnv) == "1" {
		serveEndpoint()
		return
	}
	// The end-to-end tests spend most of their time waiting for the
	// network and the endpoint's quotas, not computing: run more of them
	// at once than there are cores, unless -parallel says otherwise.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", "4")
	}
	os.Exit(m.Run())
}

// serveEndpoint runs an endpoint without quotas, prints "URL KEY SECRET"
// and serves until stdin closes.
func serveEndpoint() {
	kvs := kvslocal.New(kvslocal.Options{
		Region: "eu-west-1", AckFraming: kvslocal.FramingNewline,
		MaxFragmentsPerSecond: -1, MaxBytesPerSecond: -1, PutMediaCallsPerSecond: -1,
	})
	if err := kvs.Start(); err != nil {
		fmt.Println("error", err)
		return
	}
	defer kvs.Close()
	if _, err := kvs.CreateStream(testStream, time.Hour); err != nil {
		fmt.Println("error", err)
		return
	}
	c := kvs.Credentials()
	fmt.Println(kvs.URL, c.AccessKeyID, c.SecretAccessKey)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startEndpointProcess runs serveEndpoint in a child process.
func startEndpointProcess(tb testing.TB) (url, key, secret string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), endpointEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		tb.Fatalf("endpoint process said %q: %v", line, err)
	}
	return f[0], f[1], f[2]
}
