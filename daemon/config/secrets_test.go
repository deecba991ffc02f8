package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestSecretKeysFoundByType(t *testing.T) {
	want := map[string]string{
		"secret_access_key": "credentials.secret_access_key",
		"session_token":     "credentials.session_token",
	}
	if !reflect.DeepEqual(secretKeys, want) {
		t.Errorf("secretKeys = %v, want %v", secretKeys, want)
	}
}

// Both secrets hold characters that appear nowhere else in the test
// files, so any three of them in a row in an error are a leak.
const (
	testSecret = "wJalrXUtnFEMIK7MDENGbPxRfiCYzq9v"
	testToken  = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVz"
)

// leaked returns a piece of secret found in msg, or "".
func leaked(msg, secret string) string {
	for i := 0; i+3 <= len(secret); i++ {
		if p := secret[i : i+3]; strings.Trim(p, "/") != "" && strings.Contains(msg, p) {
			return p
		}
	}
	return ""
}

// malformedSecrets are files with a secret written wrongly, the line of
// the secret and the key the error must name.
var malformedSecrets = []struct {
	name, src string
	line      int
	key, hint string
}{
	{"unquoted", "[credentials]\nsource = \"static\"\nsecret_access_key = " + testSecret + "\n",
		3, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"unquoted with slash", "[credentials]\nsecret_access_key = wJal/rXUtn+FEMIK7MDENG\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"unterminated quote", "[credentials]\nsecret_access_key = \"" + testSecret + "\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"unterminated literal", "[credentials]\nsecret_access_key = '" + testSecret + "\nregion = \"x\"\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"text after the quotes", "[credentials]\nsecret_access_key = \"wJalrXUt\" nFEMIK7MDENGbPxRfiCYzq9v\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"invalid escape", "[credentials]\nsecret_access_key = \"wJalrX\\qUtnFEMIK7MDENGbPxRfiCYzq9v\"\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"multi-line unterminated", "[credentials]\nsecret_access_key = \"\"\"wJalrXUtnFEM\nIK7MDENGbPxRfiCYzq9v\n",
		3, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"starts with digits", "[credentials]\nsecret_access_key = 7MDENGbPxRfiCYzq9v\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"a number", "[credentials]\nsecret_access_key = 123456789\n",
		2, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"token unquoted", "thing_name = \"a\"\n[credentials]\nsession_token = " + testToken + "\n",
		3, "credentials.session_token", `session_token = "..."`},
	{"token doubled quotes", "[credentials]\nsession_token = \"IQoJb3JpZ2\"\"luX2VjEJr\"\n",
		2, "credentials.session_token", `session_token = "..."`},
	{"inline table", "credentials = { source = \"static\", secret_access_key = " + testSecret + " }\n",
		1, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"dotted key", "credentials.secret_access_key = " + testSecret + "\n",
		1, "credentials.secret_access_key", `secret_access_key = "..."`},
	{"misspelt key", "[credentials]\nsecret_acess_key = " + testSecret + "\n",
		2, "credentials.secret_acess_key", `secret_acess_key = "..."`},
}

func TestSyntaxErrorsHideSecrets(t *testing.T) {
	for _, tc := range malformedSecrets {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			msg := err.Error()
			for _, secret := range []string{testSecret, testToken} {
				if p := leaked(msg, secret); p != "" {
					t.Errorf("error repeats %q of the secret: %s", p, msg)
				}
			}
			want := lineMessage(tc.line, tc.key+": the value is not valid TOML and is not shown because it is a secret; quote the value: "+tc.hint)
			if msg != want {
				t.Errorf("error\n %s\nwant\n %s", msg, want)
			}
		})
	}
}

// Errors elsewhere in a file with a secret keep the parser's message.
func TestSyntaxErrorsElsewhereUnchanged(t *testing.T) {
	src := "[credentials]\nsecret_access_key = \"" + testSecret + "\"\nregion = eu-west-1\n"
	_, err := Parse([]byte(src))
	if err == nil || !strings.HasPrefix(err.Error(), "line 3: ") || strings.Contains(err.Error(), "secret") {
		t.Errorf("Parse = %v", err)
	}
}
