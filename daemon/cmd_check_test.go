package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvscamd/kvscamd/drivers/clock"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/internal/testdirs"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// checkConfig writes a configuration for a file stream against a local KVS
// endpoint and returns its path.
func checkConfig(t *testing.T, endpoint, key, secret, token, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kvscamd.toml")
	creds := aws.Credentials{AccessKeyID: key, SecretAccessKey: secret, SessionToken: token}
	writeControlConfig(t, path, t.TempDir(), creds, endpoint, "", fmt.Sprintf(`
[[stream]]
name = "cam-1"
driver = "file"
path = %q
fps = 30
%s`, testclips.Get("high-aud.h264").Path(), extra))
	return path
}

func TestCheckAllPass(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
	code, out, errOut := runCLI(t, "check", "-config", path)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range []string{"config", "clock", "credentials", "kvs", "device", "mqtt"} {
		if !strings.Contains(out, "\n"+name+": ok") && !strings.HasPrefix(out, name+": ok") {
			t.Errorf("no %q ok line in:\n%s", name, out)
		}
	}
	if !strings.Contains(out, "retention 24h") || strings.Contains(out, c.SecretAccessKey) || strings.Contains(out, c.SessionToken) {
		t.Errorf("output:\n%s", out)
	}
}

func TestCheckFailures(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	c := srv.IssueCredentials(time.Hour)

	// The stream does not exist and create_stream is off.
	path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
	code, out, _ := runCLI(t, "check", "-config", path)
	if code != exitFailure || !strings.Contains(out, "kvs: FAIL stream cam-1") || !strings.Contains(out, "create_stream = true") {
		t.Errorf("missing stream: exit %d\n%s", code, out)
	}
	// With create_stream on, a missing stream is fine.
	path = checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
	cfg, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(cfg), "[kvs]\n", "[kvs]\ncreate_stream = true\n", 1)), 0o600)
	if code, out, _ := runCLI(t, "check", "-config", path); code != exitOK || !strings.Contains(out, "does not exist yet") {
		t.Errorf("create_stream: exit %d\n%s", code, out)
	}

	// Keys the endpoint does not know.
	path = checkConfig(t, srv.URL, "AKIAUNKNOWN000000000", "nope-secret", "", "")
	code, out, _ = runCLI(t, "check", "-config", path)
	if code != exitFailure || !strings.Contains(out, "kvs: FAIL") || strings.Contains(out, "nope-secret") {
		t.Errorf("unknown keys: exit %d\n%s", code, out)
	}

	// A bad configuration stops at the config line, naming key and line.
	path = checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "fsp = 30\n")
	code, out, _ = runCLI(t, "check", "-config", path)
	if code != exitFailure || !strings.HasPrefix(out, "config: FAIL") || !strings.Contains(out, "fsp") || !strings.Contains(out, "line") {
		t.Errorf("unknown key: exit %d\n%s", code, out)
	}

	// An exec stream whose command does not exist.
	path = checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
	cfg, _ = os.ReadFile(path)
	cfg = []byte(strings.Replace(string(cfg), `driver = "file"`, `driver = "exec"`+"\ncommand = [\"no-such-encoder-here\"]", 1))
	os.WriteFile(path, cfg, 0o600)
	if code, out, _ := runCLI(t, "check", "-config", path); code != exitFailure || !strings.Contains(out, "device: FAIL stream cam-1") {
		t.Errorf("missing command: exit %d\n%s", code, out)
	}

	// V4L2 streams: a missing node, and a character device that is not V4L2.
	for dev, want := range map[string]string{"/dev/video-none-here": "plug in the camera", "/dev/null": "not a V4L2 device"} {
		path = checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
		cfg, _ = os.ReadFile(path)
		cfg = []byte(strings.Replace(string(cfg), `driver = "file"`, `driver = "v4l2"`+"\ndevice = \""+dev+"\"", 1))
		os.WriteFile(path, cfg, 0o600)
		if code, out, _ := runCLI(t, "check", "-config", path); code != exitFailure || !strings.Contains(out, "device: FAIL stream cam-1") || !strings.Contains(out, want) {
			t.Errorf("device %s: exit %d\n%s", dev, code, out)
		}
	}
}

// editConfig rewrites the configuration at path, replacing old with new.
func editConfig(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%q not in %s", old, path)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Stream names run refuses as ring directory names fail check too.
func TestCheckStreamNameDots(t *testing.T) {
	for _, name := range []string{".", ".."} {
		path := checkConfig(t, "http://127.0.0.1:1", "AKIAEXAMPLE", "secret", "", "")
		editConfig(t, path, "\nname = \"cam-1\"", fmt.Sprintf("\nname = %q", name))
		code, out, _ := runCLI(t, "check", "-config", path)
		want := fmt.Sprintf("stream[0].name: stream name %q cannot name the stream's ring directory", name)
		if code != exitFailure || !strings.HasPrefix(out, "config: FAIL") || !strings.Contains(out, want) {
			t.Errorf("name %q: exit %d, want %q in:\n%s", name, code, want, out)
		}
	}
}

// readOnlyDir returns a directory that refuses new files to this user,
// root included (see testdirs.ReadOnly).
func readOnlyDir(t *testing.T) string {
	t.Helper()
	return testdirs.ReadOnly(t, t.TempDir(), "ro")
}

// A state_dir run could not write to fails check, which still runs the
// checks after the config line.
func TestCheckStateDir(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		want string
	}{
		{"file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "state")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, " is not a directory"},
		{"read-only", readOnlyDir, " is not writable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			body := regexp.MustCompile(`(?m)^state_dir = .*$`).ReplaceAllString(string(b), fmt.Sprintf("state_dir = %q", dir))
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, _ := runCLI(t, "check", "-config", path)
			want := dir + tc.want
			if code != exitFailure || !strings.HasPrefix(out, "config: FAIL "+path+": state_dir: ") || !strings.Contains(out, want) {
				t.Errorf("exit %d, want %q in:\n%s", code, want, out)
			}
			if !strings.Contains(out, "\nkvs: ok") {
				t.Errorf("the other checks did not run:\n%s", out)
			}
		})
	}
}

// A secret written as invalid TOML fails check without any of it printed.
func TestCheckSyntaxErrorHidesSecret(t *testing.T) {
	const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYzq9v"
	for name, line := range map[string]string{
		"unquoted":                "secret_access_key = " + secret,
		"unterminated quote":      `secret_access_key = "` + secret,
		"text after the quotes":   `secret_access_key = "wJalrXUt" nFEMIK7MDENGbPxRfiCYzq9v`,
		"multi-line unterminated": `secret_access_key = """wJalrXUtnFEM` + "\nIK7MDENGbPxRfiCYzq9v",
		"token unquoted":          "session_token = " + secret,
	} {
		t.Run(name, func(t *testing.T) {
			path := checkConfig(t, "http://127.0.0.1:1", "AKIAEXAMPLE", "placeholder", "", "")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			body := regexp.MustCompile(`(?m)^secret_access_key = .*$`).ReplaceAllLiteralString(string(b), line)
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runCLI(t, "check", "-config", path)
			if code != exitFailure || !strings.HasPrefix(out, "config: FAIL ") || !strings.Contains(out, "is not shown because it is a secret; quote the value") {
				t.Errorf("exit %d:\n%s", code, out)
			}
			for i := 0; i+3 <= len(secret); i++ {
				if p := secret[i : i+3]; strings.Contains(out+errOut, p) {
					t.Errorf("output repeats %q of the secret:\n%s%s", p, out, errOut)
					break
				}
			}
		})
	}
}

// TestCheckUnsyncedClockWarns: a clock that is not synchronised is the
// normal state of a Pi at boot; the daemon stores video then and uploads
// it later, so check warns (and says so) without failing.
func TestCheckUnsyncedClockWarns(t *testing.T) {
	srv := kvslocal.Start(t, kvslocal.Options{})
	srv.CreateStream("cam-1", 24*time.Hour)
	c := srv.IssueCredentials(time.Hour)
	path := checkConfig(t, srv.URL, c.AccessKeyID, c.SecretAccessKey, c.SessionToken, "")
	syncFile := filepath.Join(t.TempDir(), "synced")
	t.Setenv(clock.TestSyncFileEnv, syncFile)
	code, out, errOut := runCLI(t, "check", "-config", path)
	if code != exitOK {
		t.Fatalf("exit %d with an unsynchronised clock, want 0\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^clock: WARN .*unsynchronised.*video is stored and uploaded only once it is.*timedatectl set-ntp true`).MatchString(out) {
		t.Errorf("no clock WARN line naming the consequence and the fix in:\n%s", out)
	}
	if err := os.WriteFile(syncFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ = runCLI(t, "check", "-config", path); code != exitOK || !strings.Contains(out, "\nclock: ok ") {
		t.Errorf("exit %d once synchronised, output:\n%s", code, out)
	}
}
