package credentials

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables the default chain reads, named as the AWS CLI and
// SDKs name them so that existing set-ups keep working.
const (
	envAccessKeyID     = "AWS_ACCESS_KEY_ID"
	envSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	envSessionToken    = "AWS_SESSION_TOKEN"
	envProfile         = "AWS_PROFILE"
	envCredentialsFile = "AWS_SHARED_CREDENTIALS_FILE"
	envConfigFile      = "AWS_CONFIG_FILE"
)

// unsupportedEnv are environment variables with which the AWS SDKs fetch
// credentials from another service; named in the error when nothing else
// gave credentials, so that the operator sees why they were not used.
var unsupportedEnv = []string{
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
}

// defaultProfile is the profile used when AWS_PROFILE is not set.
const defaultProfile = "default"

// EnvSourceName is Credentials.Source for keys from the environment.
const EnvSourceName = "environment"

// maxSharedFile bounds how much of a shared credentials or config file is
// read; real ones are a few KiB.
const maxSharedFile = 1 << 20

// Profile keys the default chain understands.
const (
	keyAccessKeyID     = "aws_access_key_id"
	keySecretAccessKey = "aws_secret_access_key"
	keySessionToken    = "aws_session_token"
)

// unsupportedKeys make the AWS CLI get credentials some other way than
// static keys. The default chain does not do that (see the package
// documentation), and silently using static keys found next to them would
// sign as a different identity than the operator expects.
var unsupportedKeys = []string{
	"role_arn", "source_profile", "credential_source", "credential_process",
	"web_identity_token_file", "sso_session", "sso_start_url", "sso_account_id",
	"sso_role_name", "sso_region",
}

// defaultChainHelp says where the default chain looks, for error messages.
const defaultChainHelp = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the service's environment, " +
	"or static keys (aws_access_key_id, aws_secret_access_key) in a profile in ~/.aws/credentials or ~/.aws/config of the service user " +
	"(HOME must be set; AWS_PROFILE selects the profile, AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE move the files)"

// errNoSource: neither the environment nor the shared files hold keys.
var errNoSource = errors.New("no credentials in the environment or the shared files")

// defaultChain reads the environment, then the shared credentials file,
// then the shared config file, on every Retrieve, so that keys changed in
// a file are picked up at the next refresh.
type defaultChain struct {
	getenv func(string) string
}

func newDefaultChain() (defaultChain, error) {
	d := defaultChain{getenv: os.Getenv}
	// Fail early on what only the operator can fix (an unsupported or
	// missing profile, an unreadable file); missing keys are reported by
	// Retrieve, so that they can still appear later.
	if _, err := d.resolve(); err != nil && !errors.Is(err, errNoSource) {
		return d, err
	}
	return d, nil
}

func (d defaultChain) Retrieve(context.Context) (Credentials, error) {
	c, err := d.resolve()
	if errors.Is(err, errNoSource) {
		var ignored []string
		for _, k := range unsupportedEnv {
			if d.getenv(k) != "" {
				ignored = append(ignored, k)
			}
		}
		note := ""
		if len(ignored) > 0 {
			note = " (" + strings.Join(ignored, ", ") + " set, but web identity and container credentials are not supported)"
		}
		return Credentials{}, fmt.Errorf("credentials: default chain gave no credentials: %w%s; %s", err, note, defaultChainHelp)
	}
	return c, err
}

func (d defaultChain) resolve() (Credentials, error) {
	id, secret := d.getenv(envAccessKeyID), d.getenv(envSecretAccessKey)
	switch {
	case id != "" && secret != "":
		return Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: d.getenv(envSessionToken), Source: EnvSourceName}, nil
	case id != "" || secret != "":
		set, unset := envAccessKeyID, envSecretAccessKey
		if id == "" {
			set, unset = unset, set
		}
		return Credentials{}, fmt.Errorf("credentials: default chain: %s is set in the environment but %s is not: set both, or neither to use the shared files", set, unset)
	}

	profile := d.getenv(envProfile)
	named := profile != ""
	if !named {
		profile = defaultProfile
	}
	credFile, confFile, err := d.sharedFiles()
	if err != nil {
		return Credentials{}, err
	}
	// The credentials file wins over the config file for the same key,
	// as with the AWS CLI.
	files := []struct {
		path    string
		section string
	}{
		{credFile, profile},
		{confFile, configSection(profile)},
	}
	found := false
	var keys profileKeys
	for _, f := range files {
		p, ok, err := readProfile(f.path, f.section)
		if err != nil {
			return Credentials{}, err
		}
		if !ok {
			continue
		}
		found = true
		for _, k := range unsupportedKeys {
			if _, ok := p.values[k]; ok {
				return Credentials{}, fmt.Errorf("credentials: default chain: %s, profile %q: %s is not supported (single sign-on, assumed roles, credential processes and web identity are not); "+
					"use [credentials] source = \"iot\" with the device certificate, or give the profile static keys (aws_access_key_id, aws_secret_access_key)", f.path, profile, k)
			}
		}
		keys.fill(p, f.path)
	}
	switch {
	case !found && named:
		return Credentials{}, fmt.Errorf("credentials: default chain: AWS_PROFILE names profile %q, which is neither [%s] in %s nor [%s] in %s: fix AWS_PROFILE or add the profile",
			profile, profile, credFile, configSection(profile), confFile)
	case keys.id == "" && keys.secret == "":
		return Credentials{}, errNoSource
	case keys.id == "" || keys.secret == "":
		have, lack := keyAccessKeyID, keySecretAccessKey
		if keys.id == "" {
			have, lack = lack, have
		}
		return Credentials{}, fmt.Errorf("credentials: default chain: profile %q has %s but no %s (looked in %s and %s): add it", profile, have, lack, credFile, confFile)
	}
	return Credentials{AccessKeyID: keys.id, SecretAccessKey: keys.secret, SessionToken: keys.token,
		Source: fmt.Sprintf("profile %s in %s", profile, keys.from)}, nil
}

// profileKeys collects the static keys of a profile across both files;
// the first file to set a key wins.
type profileKeys struct {
	id, secret, token, from string
}

func (k *profileKeys) fill(p section, path string) {
	set := func(dst *string, key string) {
		if v := p.values[key]; *dst == "" && v != "" {
			*dst = v
			if k.from == "" {
				k.from = path
			}
		}
	}
	set(&k.id, keyAccessKeyID)
	set(&k.secret, keySecretAccessKey)
	set(&k.token, keySessionToken)
}

// sharedFiles returns the credentials and config file paths.
func (d defaultChain) sharedFiles() (cred, conf string, err error) {
	cred, conf = d.getenv(envCredentialsFile), d.getenv(envConfigFile)
	if cred != "" && conf != "" {
		return cred, conf, nil
	}
	home := d.getenv("HOME")
	if home == "" {
		return "", "", fmt.Errorf("credentials: default chain: HOME is not set, so ~/.aws cannot be found: set HOME for the service user, or %s and %s", envCredentialsFile, envConfigFile)
	}
	if cred == "" {
		cred = filepath.Join(home, ".aws", "credentials")
	}
	if conf == "" {
		conf = filepath.Join(home, ".aws", "config")
	}
	return cred, conf, nil
}

// configSection is the config file's section name for profile: [default]
// stays as it is, others are [profile name].
func configSection(profile string) string {
	if profile == defaultProfile {
		return defaultProfile
	}
	return "profile " + profile
}

// section is one [name] of a shared file: its keys, lower case.
type section struct{ values map[string]string }

// readProfile returns the section called name from the INI-style file at
// path. A missing file is no error: it is simply not used.
func readProfile(path, name string) (section, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return section{}, false, nil
	}
	if err != nil {
		return section{}, false, fmt.Errorf("credentials: default chain: read %s: %w: make it readable by the service user or remove it", path, err)
	}
	defer f.Close()
	var (
		cur   string
		found bool
		sec   = section{values: map[string]string{}}
		// "[default]" in the config file may also be written
		// "[profile default]".
		alt = name
	)
	if name == defaultProfile {
		alt = "profile " + defaultProfile
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxSharedFile)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return section{}, false, fmt.Errorf("credentials: default chain: %s line %d: section header %q lacks its closing ']'", path, n, line)
			}
			cur = strings.Join(strings.Fields(line[1:end]), " ")
			if cur == name || cur == alt {
				found = true
			}
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			continue // a nested value of the key before (e.g. "s3 =" blocks); nothing we use
		}
		if cur != name && cur != alt {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return section{}, false, fmt.Errorf("credentials: default chain: %s line %d in [%s]: expected key = value", path, n, cur)
		}
		sec.values[strings.ToLower(strings.TrimSpace(k))] = stripComment(strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return section{}, false, fmt.Errorf("credentials: default chain: read %s: %w", path, err)
	}
	return sec, found, nil
}

// stripComment cuts a " #" or " ;" comment off a value; keys and tokens
// never contain white space, so nothing real is lost.
func stripComment(v string) string {
	for i := 1; i < len(v); i++ {
		if (v[i] == '#' || v[i] == ';') && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}
