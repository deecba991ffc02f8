package credentials_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/credentials/iotlocal"
	"github.com/kvscamd/kvscamd/credentials/testpki"
)

// Everything the tests log or see as an error is collected here; TestMain
// then searches it for every secret any server handed out.
var leakWatch struct {
	mu      sync.Mutex
	log     bytes.Buffer
	texts   []string
	servers []*iotlocal.Server
	secrets []string
}

type lockedWriter struct{}

func (lockedWriter) Write(p []byte) (int, error) {
	leakWatch.mu.Lock()
	defer leakWatch.mu.Unlock()
	return leakWatch.log.Write(p)
}

// testLogger logs at debug level into the watched buffer, in both slog
// formats, and to the test log.
func testLogger(t *testing.T) *slog.Logger {
	text := slog.NewTextHandler(lockedWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug})
	js := slog.NewJSONHandler(lockedWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(fanout{text, js})
}

type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if err := h.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}
func (f fanout) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(a)
	}
	return out
}
func (f fanout) WithGroup(n string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(n)
	}
	return out
}

// watch records text shown to an operator (errors, check lines, status).
func watch(format string, args ...any) {
	leakWatch.mu.Lock()
	defer leakWatch.mu.Unlock()
	leakWatch.texts = append(leakWatch.texts, fmt.Sprintf(format, args...))
}

// watchErr records an error in all the ways it might get printed.
func watchErr(err error) {
	if err != nil {
		watch("%v | %+v | %#v | %s", err, err, err, err.Error())
	}
}

// secret registers a secret value the tests put into configurations.
func secret(s string) string {
	leakWatch.mu.Lock()
	defer leakWatch.mu.Unlock()
	leakWatch.secrets = append(leakWatch.secrets, s)
	return s
}

func TestMain(m *testing.M) {
	code := m.Run()
	leakWatch.mu.Lock()
	secrets := append([]string(nil), leakWatch.secrets...)
	for _, s := range leakWatch.servers {
		for _, c := range s.Issued() {
			secrets = append(secrets, c.SecretAccessKey, c.SessionToken)
		}
	}
	haystack := leakWatch.log.String() + "\n" + strings.Join(leakWatch.texts, "\n")
	leakWatch.mu.Unlock()
	if leaks := scanForSecrets(haystack, secrets); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "SECRET LEAK:", strings.Join(leaks, "\n"))
		code = 1
	}
	if testing.Verbose() {
		fmt.Printf("leak check: %d secrets searched in %d bytes of logs and error texts\n", len(secrets), len(haystack))
	}
	os.Exit(code)
}

// scanForSecrets reports every secret that occurs in haystack, by length
// only: printing it would leak it into the test log.
func scanForSecrets(haystack string, secrets []string) []string {
	var leaks []string
	for _, s := range secrets {
		if s != "" && strings.Contains(haystack, s) {
			i := strings.Index(haystack, s)
			ctx := haystack[max(0, i-80):i]
			leaks = append(leaks, fmt.Sprintf("secret of length %d found after %q", len(s), ctx))
		}
	}
	return leaks
}

func TestScanForSecretsFindsPlantedSecret(t *testing.T) {
	if got := scanForSecrets("a log line with wJalrXUtnFEMI/K7MDENG in it", []string{"nothere", "wJalrXUtnFEMI/K7MDENG"}); len(got) != 1 {
		t.Fatalf("planted secret not found: %v", got)
	}
	if got := scanForSecrets("clean", []string{"wJalrXUtnFEMI/K7MDENG", ""}); len(got) != 0 {
		t.Fatalf("false positive: %v", got)
	}
}

// env is a PKI, a running local IoT credentials server and a matching
// configuration.
type env struct {
	pki *testpki.Set
	srv *iotlocal.Server
	cfg credentials.Config
}

const thing = "cam-0001"

func newEnv(t *testing.T, lifetime time.Duration) *env {
	t.Helper()
	pki, err := testpki.Generate(t.TempDir(), thing)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := iotlocal.Start(iotlocal.Config{TLS: pki.ServerTLS(), Lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	leakWatch.mu.Lock()
	leakWatch.servers = append(leakWatch.servers, srv)
	leakWatch.mu.Unlock()
	return &env{pki: pki, srv: srv, cfg: credentials.Config{
		Source:         credentials.SourceIoT,
		Endpoint:       srv.Endpoint(),
		RoleAlias:      iotlocal.DefaultRoleAlias,
		ThingName:      thing,
		Cert:           pki.Client.Cert,
		Key:            pki.Client.Key,
		CA:             pki.CAFile,
		ConnectTimeout: 2 * time.Second,
		RequestTimeout: 5 * time.Second,
		MaxAttempts:    3,
		RetryBase:      time.Millisecond,
		RetryMax:       5 * time.Millisecond,
	}}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}
