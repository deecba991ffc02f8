package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const examplePath = "../../systemd/kvscamd.example.toml"

// minimal is the smallest file that validates: everything else defaults.
const minimal = `
thing_name = "cam-0001"
region = "eu-west-1"
[credentials]
endpoint = "abc.credentials.iot.eu-west-1.amazonaws.com"
role_alias = "kvscamd"
cert = "/c.pem"
key = "/k.pem"
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	if err := c.Validate(); err != nil {
		t.Fatalf("minimal config does not validate: %v", err)
	}
	want := Config{
		ThingName: "cam-0001",
		Region:    "eu-west-1",
		StateDir:  "/var/lib/kvscamd",
		LogLevel:  "info",
		ClockSync: "wait",
		Credentials: Credentials{
			Source: "iot", Endpoint: "abc.credentials.iot.eu-west-1.amazonaws.com",
			RoleAlias: "kvscamd", Cert: "/c.pem", Key: "/k.pem",
		},
		KVS:          KVS{Retention: Duration(24 * time.Hour)},
		MQTT:         MQTT{KeepAlive: Duration(300 * time.Second), TelemetryInterval: Duration(60 * time.Second), Commands: true, Shadow: true, Jobs: true, Cert: "/c.pem", Key: "/k.pem"},
		Provisioning: Provisioning{KeyType: KeyECDSAP256, RenewBefore: Duration(30 * 24 * time.Hour)},
		Streams: []Stream{{
			Name: "cam-0001", Driver: "v4l2", Device: "/dev/video0", Realtime: true,
			Width: 1280, Height: 720, FPS: 30, Bitrate: 2000000,
			KeyframeInterval: Duration(2 * time.Second), RingSize: 1 << 30, Mode: "live",
			UploadOrder: "live-first", MaxLiveLag: Duration(10 * time.Second),
		}},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
}

// Every [[stream]] starts from the stream defaults, not from zero values,
// and only the first can take thing_name as its name.
func TestStreamDefaultsPerTable(t *testing.T) {
	c := mustParse(t, minimal+`
[[stream]]
fps = 25
realtime = false
[[stream]]
name = "second"
driver = "file"
path = "/x.h264"
`)
	if len(c.Streams) != 2 {
		t.Fatalf("got %d streams", len(c.Streams))
	}
	s0, s1 := c.Streams[0], c.Streams[1]
	if s0.Name != "cam-0001" || s0.FPS != 25 || s0.Realtime || s0.Width != DefaultWidth {
		t.Errorf("stream 0 = %+v", s0)
	}
	if s1.Name != "second" || s1.FPS != DefaultFPS || !s1.Realtime || s1.RingSize != DefaultRingSize || s1.Driver != DriverFile {
		t.Errorf("stream 1 = %+v", s1)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestMQTTCertificatesOverride(t *testing.T) {
	c := mustParse(t, minimal+`
[mqtt]
cert = "/m.pem"
`)
	if c.MQTT.Cert != "/m.pem" || c.MQTT.Key != "/k.pem" || c.MQTT.CA != "" {
		t.Errorf("mqtt cert/key/ca = %q %q %q", c.MQTT.Cert, c.MQTT.Key, c.MQTT.CA)
	}
}

// optionalExampleKeys are tables of free-form keys that the example
// documents in a comment: an empty one in the file would not equal the
// default (no table).
var optionalExampleKeys = map[string]bool{"provisioning.parameters": true}

// The example file is the documentation of every key: it must parse,
// validate, name every key, and show the defaults as they are.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse example: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("example does not validate:\n%v", err)
	}

	var m map[string]any
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, k := range md.Keys() {
		defined[k.String()] = true
	}
	for _, k := range allKeys(reflect.TypeOf(Config{}), nil) {
		if !defined[strings.Join(k, ".")] && !optionalExampleKeys[strings.Join(k, ".")] {
			t.Errorf("example file lacks key %s", strings.Join(k, "."))
		}
	}

	// Apart from the values marked "(example)", the file shows defaults.
	want := Default()
	want.ThingName, want.Region = "cam-0001", "eu-west-1"
	want.Credentials.Endpoint = "xxxx.credentials.iot.eu-west-1.amazonaws.com"
	want.Credentials.RoleAlias = "kvscamd"
	want.Credentials.Cert = "/etc/kvscamd/certs/device.pem.crt"
	want.Credentials.Key = "/etc/kvscamd/certs/private.pem.key"
	want.Credentials.CA = "/etc/kvscamd/certs/AmazonRootCA1.pem"
	want.MQTT.Endpoint = "xxxx-ats.iot.eu-west-1.amazonaws.com:8883"
	want.Streams[0].Command = []string{}
	want.fillDerived()
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("example values differ from the defaults:\n got %+v\nwant %+v", *c, want)
	}
}

// allKeys lists the key paths of struct type t from its toml tags.
func allKeys(t reflect.Type, prefix []string) [][]string {
	var out [][]string
	for i := 0; i < t.NumField(); i++ {
		if tagName(t.Field(i)) == "-" {
			continue // loaded from elsewhere, not a key of the file
		}
		k := append(append([]string{}, prefix...), tagName(t.Field(i)))
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, allKeys(ft, k)...)
			continue
		}
		out = append(out, k)
	}
	return out
}

// validationCases each break one rule; want is the problem's key and a
// part of its message.
var validationCases = []struct {
	name    string
	edit    func(c *Config)
	key     string
	message string
}{
	{"thing_name missing", func(c *Config) { c.ThingName = ""; c.Streams[0].Name = "x" }, "thing_name", `required; set thing_name = "cam-0001"`},
	{"thing_name bad", func(c *Config) { c.ThingName = "cam 1" }, "thing_name", "not a valid AWS IoT thing name"},
	{"thing_name long", func(c *Config) { c.ThingName = strings.Repeat("a", 129) }, "thing_name", "1..128"},
	{"region missing", func(c *Config) { c.Region = "" }, "region", "required"},
	{"region bad", func(c *Config) { c.Region = "Ireland" }, "region", `does not look like an AWS region`},
	{"state_dir relative", func(c *Config) { c.StateDir = "var/lib" }, "state_dir", "absolute path"},
	{"state_dir empty", func(c *Config) { c.StateDir = "" }, "state_dir", "required"},
	{"log_level", func(c *Config) { c.LogLevel = "verbose" }, "log_level", `must be one of "info", "debug", "warn", "error", got "verbose"; set log_level = "info"`},
	{"clock_sync", func(c *Config) { c.ClockSync = "ntp" }, "clock_sync", `must be one of "wait", "trust"`},
	{"credentials.source", func(c *Config) { c.Credentials.Source = "env" }, "credentials.source", `must be one of "iot", "static", "default"`},
	{"iot endpoint", func(c *Config) { c.Credentials.Endpoint = "" }, "credentials.endpoint", "describe-endpoint"},
	{"iot endpoint space", func(c *Config) { c.Credentials.Endpoint = "a b" }, "credentials.endpoint", "not a host name"},
	{"iot role_alias", func(c *Config) { c.Credentials.RoleAlias = "" }, "credentials.role_alias", "required"},
	{"iot cert", func(c *Config) { c.Credentials.Cert = "" }, "credentials.cert", "required"},
	{"iot key", func(c *Config) { c.Credentials.Key = "" }, "credentials.key", "required"},
	{"static key id", func(c *Config) { c.Credentials.Source = "static"; c.Credentials.SecretAccessKey = "s" }, "credentials.access_key_id", "required"},
	{"static secret", func(c *Config) { c.Credentials.Source = "static"; c.Credentials.AccessKeyID = "a" }, "credentials.secret_access_key", "required"},
	{"kvs endpoint", func(c *Config) { c.KVS.Endpoint = "localhost:8080" }, "kvs.endpoint", "not an http(s) URL"},
	{"kvs retention negative", func(c *Config) { c.KVS.Retention = Duration(-time.Hour) }, "kvs.retention", "must be 0 (no retention) to 87600h"},
	{"kvs retention huge", func(c *Config) { c.KVS.Retention = Duration(87601 * time.Hour) }, "kvs.retention", "87600h"},
	{"kvs retention partial hour", func(c *Config) { c.KVS.Retention = Duration(90 * time.Minute) }, "kvs.retention", `whole hours, got 1h30m0s; set retention = "2h"`},
	{"mqtt endpoint", func(c *Config) { c.MQTT.Enabled = true }, "mqtt.endpoint", "required"},
	{"mqtt endpoint port", func(c *Config) { c.MQTT.Enabled = true; c.MQTT.Endpoint = "iot.example" }, "mqtt.endpoint", `must be host:port; set e.g. endpoint = "iot.example:8883"`},
	{"mqtt telemetry", func(c *Config) { c.MQTT.Enabled = true; c.MQTT.Endpoint = "h:8883"; c.MQTT.TelemetryInterval = 0 }, "mqtt.telemetry_interval", "at least 1s"},
	{"mqtt cert", func(c *Config) { c.MQTT.Enabled = true; c.MQTT.Endpoint = "h:8883"; c.MQTT.Cert = "" }, "mqtt.cert", "required"},
	{"mqtt key", func(c *Config) { c.MQTT.Enabled = true; c.MQTT.Endpoint = "h:8883"; c.MQTT.Key = "" }, "mqtt.key", "required"},
	{"mqtt port number", func(c *Config) { c.MQTT.Enabled = true; c.MQTT.Endpoint = "h:mqtt" }, "mqtt.endpoint", "not a port number"},
	{"mqtt keep-alive short", func(c *Config) {
		c.MQTT.Enabled = true
		c.MQTT.Endpoint = "h:8883"
		c.MQTT.KeepAlive = Duration(10 * time.Second)
	}, "mqtt.keep_alive", "from 30s to 20m0s"},
	{"mqtt keep-alive long", func(c *Config) {
		c.MQTT.Enabled = true
		c.MQTT.Endpoint = "h:443"
		c.MQTT.KeepAlive = Duration(time.Hour)
	}, "mqtt.keep_alive", "got 1h0m0s"},
	{"no streams", func(c *Config) { c.Streams = nil }, "stream", "add a [[stream]] table"},
	{"stream name empty", func(c *Config) { c.Streams[0].Name = "" }, "stream[0].name", "required"},
	{"stream name chars", func(c *Config) { c.Streams[0].Name = "a/b" }, "stream[0].name", `has '/' at position 2; use only a-z A-Z 0-9 _ . -`},
	{"stream name long", func(c *Config) { c.Streams[0].Name = strings.Repeat("x", 257) }, "stream[0].name", "use at most 256"},
	{"stream name dot", func(c *Config) { c.Streams[0].Name = "." }, "stream[0].name", `"." cannot name the stream's ring directory`},
	{"stream name dot dot", func(c *Config) { c.Streams[0].Name = ".." }, "stream[0].name", `".." cannot name the stream's ring directory`},
	{"stream name duplicate", func(c *Config) { c.Streams = append(c.Streams, c.Streams[0]) }, "stream[1].name", `"cam-0001" is already the name of stream[0]`},
	{"driver", func(c *Config) { c.Streams[0].Driver = "usb" }, "stream[0].driver", `must be one of "v4l2", "file", "exec"`},
	{"v4l2 device", func(c *Config) { c.Streams[0].Device = "" }, "stream[0].device", `set device = "/dev/video0"`},
	{"file path", func(c *Config) { c.Streams[0].Driver = "file" }, "stream[0].path", "required"},
	{"exec command", func(c *Config) { c.Streams[0].Driver = "exec" }, "stream[0].command", `required for driver "exec"`},
	{"exec command empty argv0", func(c *Config) { c.Streams[0].Driver = "exec"; c.Streams[0].Command = []string{""} }, "stream[0].command", "required"},
	{"width", func(c *Config) { c.Streams[0].Width = 0 }, "stream[0].width", "must be 16..8192, got 0; set width = 1280"},
	{"height", func(c *Config) { c.Streams[0].Height = 10000 }, "stream[0].height", "must be 16..8192"},
	{"fps zero", func(c *Config) { c.Streams[0].FPS = 0 }, "stream[0].fps", "must be 1..120, got 0; set fps = 30"},
	{"fps high", func(c *Config) { c.Streams[0].FPS = 121 }, "stream[0].fps", "must be 1..120"},
	{"bitrate", func(c *Config) { c.Streams[0].Bitrate = 0 }, "stream[0].bitrate", "must be 1..100000000"},
	{"bitrate over quota", func(c *Config) { c.Streams[0].Bitrate = 100_000_001 }, "stream[0].bitrate", "must be 1..100000000"},
	{"keyframe zero", func(c *Config) { c.Streams[0].KeyframeInterval = 0 }, "stream[0].keyframe_interval", "more than 0 and at most 10s"},
	{"keyframe long", func(c *Config) { c.Streams[0].KeyframeInterval = Duration(11 * time.Second) }, "stream[0].keyframe_interval", "at most 10s"},
	{"keyframe below the shortest fragment", func(c *Config) { c.Streams[0].KeyframeInterval = Duration(500 * time.Millisecond) }, "stream[0].keyframe_interval", "below 1s, the shortest fragment KVS takes"},
	{"upload order", func(c *Config) { c.Streams[0].UploadOrder = "newest" }, "stream[0].upload_order", `one of "live-first", "in-order"`},
	{"live lag short", func(c *Config) { c.Streams[0].MaxLiveLag = Duration(time.Second) }, "stream[0].max_live_lag", "between 2s and 10m0s"},
	{"fragment too large", func(c *Config) {
		c.Streams[0].Bitrate = 50_000_000
		c.Streams[0].KeyframeInterval = Duration(10 * time.Second)
	}, "stream[0].keyframe_interval", "larger than KVS's 50MB limit"},
	{"ring_size", func(c *Config) { c.Streams[0].RingSize = 15 * MiB }, "stream[0].ring_size", `must be at least 16MiB, got 15MiB; set ring_size = "1GiB"`},
	{"mode", func(c *Config) { c.Streams[0].Mode = "archive" }, "stream[0].mode", `must be one of "live", "record"`},
	{"rate below bitrate", func(c *Config) { c.Streams[0].UploadRateLimit = 100_000 }, "stream[0].upload_rate_limit", "could never catch up; set at least 250KB/s"},
}

func TestValidate(t *testing.T) {
	for _, tc := range validationCases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, minimal)
			tc.edit(c)
			err := c.Validate()
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Validate = %v; want Problems", err)
			}
			for _, p := range ps {
				if p.Key == tc.key && strings.Contains(p.Message, tc.message) {
					return
				}
			}
			t.Errorf("no problem %s: ...%s...; got:\n%v", tc.key, tc.message, err)
		})
	}
}

// Rules that must not fire on valid variants.
func TestValidateAccepts(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"static":           func(c *Config) { c.Credentials = Credentials{Source: "static", AccessKeyID: "a", SecretAccessKey: "s"} },
		"default chain":    func(c *Config) { c.Credentials = Credentials{Source: "default"}; c.MQTT.Cert, c.MQTT.Key = "", "" },
		"no retention":     func(c *Config) { c.KVS.Retention = 0 },
		"local endpoint":   func(c *Config) { c.KVS.Endpoint = "http://127.0.0.1:4566" },
		"mqtt":             func(c *Config) { c.MQTT.Enabled = true; c.MQTT.Endpoint = "[::1]:8883" },
		"record slow link": func(c *Config) { c.Streams[0].Mode = "record"; c.Streams[0].UploadRateLimit = 1000 },
		"exact rate":       func(c *Config) { c.Streams[0].UploadRateLimit = 250_000 },
		"exec":             func(c *Config) { c.Streams[0].Driver = "exec"; c.Streams[0].Command = []string{"ffmpeg"} },
		"limits": func(c *Config) {
			s := &c.Streams[0]
			s.FPS, s.Width, s.Height, s.Bitrate, s.RingSize = 120, 16, 8192, 40_000_000, MinRingSize
			s.KeyframeInterval = Duration(MaxKeyframeInterval)
			s.Name = strings.Repeat("a", 256)
		},
		"region gov": func(c *Config) { c.Region = "us-gov-west-1" },
	} {
		c := mustParse(t, minimal)
		edit(c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}

// All problems come back at once, one line each.
func TestValidateReportsAll(t *testing.T) {
	c := mustParse(t, `
[[stream]]
fps = 0
ring_size = "1MiB"
`)
	err := c.Validate()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Validate = %v", err)
	}
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	want := []string{"thing_name", "region", "credentials.endpoint", "credentials.role_alias", "credentials.cert", "credentials.key", "stream[0].name", "stream[0].fps", "stream[0].ring_size"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("problem keys = %q; want %q", keys, want)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("error has %d lines; want %d:\n%v", n, len(want), err)
	}
}

func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []UnknownKey
	}{
		{"top level", "thing_name = \"a\"\nthing = 1\n",
			[]UnknownKey{{Key: "thing", Line: 2}}},
		{"typo", "\nregoin = \"eu-west-1\"\n",
			[]UnknownKey{{Key: "regoin", Line: 2, Suggestion: "region"}}},
		{"in table", "[kvs]\nendpoint = \"\"\nretension = \"1h\"\n",
			[]UnknownKey{{Key: "kvs.retension", Line: 3, Suggestion: "retention"}}},
		{"unknown table reported once", "[camera]\na = 1\nb = 2\n",
			[]UnknownKey{{Key: "camera", Line: 1}}},
		{"second stream", "[[stream]]\nname = \"a\"\n[[stream]]\nname = \"b\"\nfsp = 30\n",
			[]UnknownKey{{Key: "stream[1].fsp", Line: 5, Suggestion: "fps"}}},
		{"sub-table of stream", "[[stream]]\n[stream.audio]\nrate = 1\n",
			[]UnknownKey{{Key: "stream[0].audio", Line: 2}}},
		{"inline table", "mqtt = { enabled = false, port = 1 }\n",
			[]UnknownKey{{Key: "mqtt.port", Line: 1}}},
		{"dotted", "credentials.sorce = \"iot\"\n",
			[]UnknownKey{{Key: "credentials.sorce", Line: 1, Suggestion: "source"}}},
		{"quoted", "\"odd key\" = 1\n",
			[]UnknownKey{{Key: `"odd key"`, Line: 1}}},
		{"several in line order", "a = 1\n[mqtt]\nb = 2\n[kvs]\nc = 3\n",
			[]UnknownKey{{Key: "a", Line: 1}, {Key: "mqtt.b", Line: 3}, {Key: "kvs.c", Line: 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			var uk *UnknownKeyError
			if !errors.As(err, &uk) {
				t.Fatalf("Parse = %v; want UnknownKeyError", err)
			}
			if !reflect.DeepEqual(uk.Keys, tc.want) {
				t.Errorf("unknown keys = %+v; want %+v", uk.Keys, tc.want)
			}
		})
	}
	_, err := Parse([]byte("[kvs]\nretension = \"1h\"\n"))
	if want := "line 2: unknown key kvs.retension (did you mean retention?)"; err == nil || err.Error() != want {
		t.Errorf("message = %v; want %q", err, want)
	}
}

func TestDecodeErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"syntax", "thing_name = \"a\"\nregion = \n", "line 2:"},
		{"unterminated string", "a = 1\n\nregion = \"eu\n", "line 3:"},
		{"duplicate key", "region = \"a\"\nregion = \"b\"\n", "line 2:"},
		{"bad size", "[[stream]]\nname = \"x\"\nring_size = \"1 XB\"\n", `line 3: stream.ring_size: size "1 XB": unknown unit "XB"`},
		{"bad duration", "[kvs]\nretention = \"1 day\"\n", `line 2: kvs.retention: duration "1 day": not a duration`},
		{"bare number duration", "[[stream]]\nkeyframe_interval = 2\n", `stream[0]: line 2: stream.keyframe_interval: duration "2" has no unit`},
		{"wrong type", "\n[[stream]]\nfps = \"30\"\n", "line 3"},
		{"table as value", "stream = 1\n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v; want error containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(good, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(minimal+"[[stream]]\nfps = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil || c.Streams[0].Name != "cam-0001" {
		t.Errorf("Load(good) = %+v, %v", c, err)
	}
	_, err = Load(bad)
	var ps Problems
	if !errors.As(err, &ps) || !strings.Contains(err.Error(), bad+": stream[0].fps: must be 1..120") {
		t.Errorf("Load(bad) = %v", err)
	}
	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestLogLevelSlog(t *testing.T) {
	for l, want := range map[LogLevel]string{LogDebug: "DEBUG", LogInfo: "INFO", LogWarn: "WARN", LogError: "ERROR"} {
		if got := l.Slog().String(); got != want {
			t.Errorf("%s.Slog() = %s", l, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(string(data))
	}
	f.Add(minimal)
	f.Add("[[stream]]\nname = \"a\"\nfsp = 1\n[[stream]]\n[stream.x]\ny = 1\n")
	f.Add("mqtt = { a = 1 }\n\"q.k\" = 2\n")
	f.Add("[kvs]\nretention = \"1h30m\"\n[[stream]]\nring_size = 1.5\nupload_rate_limit = \"1MB/s\"\n")
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse([]byte(src))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = c.Validate()
		if len(c.Streams) == 0 {
			t.Fatal("Parse returned a config without streams")
		}
	})
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// A configuration written out with the TOML encoder (as a shadow report or
// "effective configuration" dump would) reads back unchanged.
func TestEncodeRoundTrip(t *testing.T) {
	c := mustParse(t, minimal+`
[[stream]]
driver = "exec"
command = ["ffmpeg", "-i", "x"]
ring_size = "1536MiB"
upload_rate_limit = "3MB/s"
keyframe_interval = "1500ms"
[[stream]]
name = "two"
mode = "record"
`)
	var buf strings.Builder
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	back, err := Parse([]byte(buf.String()))
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the config:\n got %+v\nwant %+v\nencoded:\n%s", back, c, buf.String())
	}
}
