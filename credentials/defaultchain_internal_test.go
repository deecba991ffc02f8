package credentials

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chainEnv is a temporary HOME with optional shared files and a fake
// environment.
type chainEnv struct {
	home string
	env  map[string]string
}

func newChainEnv(t *testing.T) *chainEnv {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &chainEnv{home: home, env: map[string]string{"HOME": home}}
}

func (e *chainEnv) write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(e.home, ".aws", name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *chainEnv) chain() defaultChain {
	return defaultChain{getenv: func(k string) string { return e.env[k] }}
}

func TestDefaultChainEnvironment(t *testing.T) {
	e := newChainEnv(t)
	e.write(t, "credentials", "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = filesecret\n")
	e.env[envAccessKeyID], e.env[envSecretAccessKey], e.env[envSessionToken] = "AKIAENV", "envsecret", "envtoken"
	c, err := e.chain().Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != "AKIAENV" || c.SecretAccessKey != "envsecret" || c.SessionToken != "envtoken" || c.Source != EnvSourceName || c.CanExpire {
		t.Fatalf("environment keys must win over the files: got %s (token %v)", c, c.SessionToken == "envtoken")
	}

	delete(e.env, envSecretAccessKey)
	_, err = e.chain().Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID is set in the environment but AWS_SECRET_ACCESS_KEY is not") {
		t.Fatalf("half a key pair in the environment: %v", err)
	}
}

func TestDefaultChainSharedFiles(t *testing.T) {
	for _, c := range []struct {
		name        string
		profile     string // AWS_PROFILE
		credentials string // ~/.aws/credentials, "" = absent
		config      string // ~/.aws/config, "" = absent
		id, secret  string
		token       string
		from        string // file the keys came from
	}{
		{name: "default profile in credentials file",
			credentials: "# comment\n[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = o\n\n[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = defsecret ; inline comment\naws_session_token=tok\n",
			id:          "AKIADEF", secret: "defsecret", token: "tok", from: "credentials"},
		{name: "named profile in credentials file", profile: "cam",
			credentials: "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = d\n[cam]\nAWS_ACCESS_KEY_ID = AKIACAM\naws_secret_access_key = camsecret\n",
			id:          "AKIACAM", secret: "camsecret", from: "credentials"},
		{name: "named profile in config file", profile: "cam",
			config: "[default]\nregion = eu-west-1\n[cam]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = w\n[profile   cam]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 10\naws_access_key_id = AKIACONF\naws_secret_access_key = confsecret\n",
			id:     "AKIACONF", secret: "confsecret", from: "config"},
		{name: "default profile in config file",
			config: "[default]\naws_access_key_id = AKIACONFDEF\naws_secret_access_key = cd\n",
			id:     "AKIACONFDEF", secret: "cd", from: "config"},
		{name: "credentials file wins over config file",
			credentials: "[default]\naws_access_key_id = AKIACRED\naws_secret_access_key = credsecret\n",
			config:      "[profile default]\naws_access_key_id = AKIACONF\naws_secret_access_key = confsecret\naws_session_token = conftoken\n",
			id:          "AKIACRED", secret: "credsecret", token: "conftoken", from: "credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newChainEnv(t)
			if c.profile != "" {
				e.env[envProfile] = c.profile
			}
			if c.credentials != "" {
				e.write(t, "credentials", c.credentials)
			}
			if c.config != "" {
				e.write(t, "config", c.config)
			}
			got, err := e.chain().Retrieve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessKeyID != c.id || got.SecretAccessKey != c.secret || got.SessionToken != c.token || got.CanExpire {
				t.Fatalf("got %s secret ok %v token %q, want %s", got, got.SecretAccessKey == c.secret, got.SessionToken, c.id)
			}
			if want := filepath.Join(e.home, ".aws", c.from); !strings.Contains(got.Source, want) {
				t.Errorf("source %q does not name %s", got.Source, want)
			}
		})
	}
}

func TestDefaultChainFileLocationsFromEnvironment(t *testing.T) {
	e := newChainEnv(t)
	dir := t.TempDir()
	cred := filepath.Join(dir, "creds.ini")
	if err := os.WriteFile(cred, []byte("[default]\naws_access_key_id = AKIAMOVED\naws_secret_access_key = moved\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.write(t, "credentials", "[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = home\n")
	e.env[envCredentialsFile] = cred
	e.env[envConfigFile] = filepath.Join(dir, "absent")
	delete(e.env, "HOME") // not needed when both files are named
	got, err := e.chain().Retrieve(context.Background())
	if err != nil || got.AccessKeyID != "AKIAMOVED" {
		t.Fatalf("AWS_SHARED_CREDENTIALS_FILE not used: %s, %v", got, err)
	}
}

func TestDefaultChainErrors(t *testing.T) {
	for _, c := range []struct {
		name        string
		profile     string
		credentials string
		config      string
		noHome      bool
		env         map[string]string
		atNew       bool     // New refuses it already
		want        []string // all in the error
	}{
		{name: "nothing anywhere", want: []string{"default chain gave no credentials", "AWS_ACCESS_KEY_ID", "~/.aws/credentials"}},
		{name: "web identity in the environment", env: map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn:aws:iam::1:role/x"},
			want: []string{"default chain gave no credentials", "AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN set, but web identity", "AWS_ACCESS_KEY_ID"}},
		{name: "no HOME", noHome: true, atNew: true, want: []string{"HOME is not set", "AWS_SHARED_CREDENTIALS_FILE"}},
		{name: "named profile missing", profile: "cam", credentials: "[default]\naws_access_key_id = A\naws_secret_access_key = s\n", atNew: true,
			want: []string{`profile "cam"`, "[cam] in", "[profile cam] in", "AWS_PROFILE"}},
		{name: "secret missing", credentials: "[default]\naws_access_key_id = AKIAHALF\n", atNew: true,
			want: []string{`profile "default" has aws_access_key_id but no aws_secret_access_key`}},
		{name: "sso", profile: "dev", config: "[profile dev]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = r\n", atNew: true,
			want: []string{"config", `profile "dev"`, "sso_session is not supported", `source = "iot"`, "static keys"}},
		{name: "assume role next to static keys", credentials: "[default]\naws_access_key_id = A\naws_secret_access_key = s\nrole_arn = arn:aws:iam::1:role/x\n", atNew: true,
			want: []string{"credentials", `profile "default"`, "role_arn is not supported"}},
		{name: "credential process", profile: "p", credentials: "[p]\ncredential_process = /usr/bin/get-creds\n", atNew: true,
			want: []string{`profile "p"`, "credential_process is not supported"}},
		{name: "web identity", config: "[default]\nweb_identity_token_file = /var/run/token\nrole_arn = arn:aws:iam::1:role/x\n", atNew: true,
			want: []string{"role_arn is not supported"}},
		{name: "malformed line", credentials: "[default]\naws_access_key_id\n", atNew: true,
			want: []string{"line 2", "expected key = value"}},
		{name: "unclosed section", credentials: "[default\n", atNew: true, want: []string{"line 1", "closing ']'"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newChainEnv(t)
			if c.profile != "" {
				e.env[envProfile] = c.profile
			}
			if c.credentials != "" {
				e.write(t, "credentials", c.credentials)
			}
			if c.config != "" {
				e.write(t, "config", c.config)
			}
			if c.noHome {
				delete(e.env, "HOME")
			}
			for k, v := range c.env {
				e.env[k] = v
			}
			_, err := e.chain().Retrieve(context.Background())
			if err == nil {
				t.Fatal("Retrieve succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
			if _, rerr := e.chain().resolve(); errors.Is(rerr, errNoSource) == c.atNew {
				t.Errorf("New would refuse it: %v, want %v", !errors.Is(rerr, errNoSource), c.atNew)
			}
		})
	}
}

func TestDefaultChainUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	e := newChainEnv(t)
	p := e.write(t, "credentials", "[default]\n")
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	_, err := e.chain().Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "readable") {
		t.Fatalf("unreadable file: %v", err)
	}
}
