package credentials

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// parseCases feed the table test and seed the fuzz target.
var parseCases = []struct {
	name string
	body string
	ok   bool
}{
	{"valid", `{"credentials":{"accessKeyId":"ASIAEXAMPLEEXAMPLE01","secretAccessKey":"fuzzSecretValue0123456789","sessionToken":"fuzzTokenValue0123456789","expiration":"2099-01-18T09:18:06Z"}}`, true},
	{"fractional seconds", `{"credentials":{"accessKeyId":"A","secretAccessKey":"fuzzSecretValue0123456789","sessionToken":"t","expiration":"2099-01-18T09:18:06.123Z"}}`, true},
	{"missing token", `{"credentials":{"accessKeyId":"A","secretAccessKey":"fuzzSecretValue0123456789","expiration":"2099-01-18T09:18:06Z"}}`, false},
	{"flat layout", `{"accessKeyId":"A","secretAccessKey":"fuzzSecretValue0123456789","sessionToken":"t","expiration":"2099-01-18T09:18:06Z"}`, false},
	{"bad expiration", `{"credentials":{"accessKeyId":"A","secretAccessKey":"fuzzSecretValue0123456789","sessionToken":"t","expiration":"tomorrow"}}`, false},
	{"expired", `{"credentials":{"accessKeyId":"A","secretAccessKey":"fuzzSecretValue0123456789","sessionToken":"t","expiration":"2001-01-18T09:18:06Z"}}`, false},
	{"truncated", `{"credentials":{"accessKeyId":"A","secretAccessKey":"fuzzSecretValue0123456789","sess`, false},
	{"html", `<html>fuzzSecretValue0123456789</html>`, false},
	{"empty", ``, false},
}

func testProvider(t testing.TB) *IoTProvider {
	p, err := NewIoTProvider(Config{Endpoint: "x.example", RoleAlias: "a", ThingName: "t", Cert: "c", Key: "k"},
		WithClock(clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	p := testProvider(t)
	for _, tc := range parseCases {
		c, err := p.parse("application/json", []byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "fuzzSecretValue") {
			t.Errorf("%s: error quotes the body's secret: %v", tc.name, err)
		}
		if err == nil && (!c.CanExpire || c.Source != IoTSourceName) {
			t.Errorf("%s: %v %q", tc.name, c.CanExpire, c.Source)
		}
	}
}

// FuzzParse: no input makes parse panic, accepted input yields complete
// credentials, and an error never quotes the secret access key.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.body))
	}
	p := testProvider(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := p.parse("application/json", body)
		if err == nil {
			if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.SessionToken == "" || !c.CanExpire {
				t.Fatalf("accepted incomplete credentials from %q", body)
			}
			return
		}
		var r iotResponse
		if jsonErr := json.Unmarshal(body, &r); jsonErr == nil {
			s := r.Credentials.SecretAccessKey
			if len(s) >= 8 && !strings.Contains(r.Credentials.Expiration, s) && strings.Contains(err.Error(), s) {
				t.Fatalf("error quotes the secret: %v", err)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	p := testProvider(b)
	body := []byte(parseCases[0].body)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.parse("application/json", body); err != nil {
			b.Fatal(err)
		}
	}
}
