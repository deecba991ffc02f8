package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Every Stream key but name must say how a running stream applies it.
func TestStreamEffectsComplete(t *testing.T) {
	typ := reflect.TypeOf(Stream{})
	for i := 0; i < typ.NumField(); i++ {
		tag := tagName(typ.Field(i))
		if _, ok := streamEffects[tag]; !ok && tag != "name" {
			t.Errorf("stream key %s has no entry in streamEffects", tag)
		}
	}
	for key := range streamEffects {
		if _, ok := fieldByTag(typ, key); !ok {
			t.Errorf("streamEffects lists %s, which is not a stream key", key)
		}
	}
}

func TestDiffStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *Stream)
		want []Change
	}{
		{"same", func(s *Stream) {}, nil},
		{"empty and missing command", func(s *Stream) { s.Command = []string{} }, nil},
		{"name is identity, not a change", func(s *Stream) { s.Name = "other" }, nil},
		{"upload_rate_limit", func(s *Stream) { s.UploadRateLimit = 1_000_000 },
			[]Change{{"upload_rate_limit", "0", "1MB/s", EffectLive}}},
		{"mode", func(s *Stream) { s.Mode = ModeRecord }, []Change{{"mode", "live", "record", EffectLive}}},
		{"driver", func(s *Stream) { s.Driver = DriverFile }, []Change{{"driver", "v4l2", "file", EffectRestartSource}}},
		{"device", func(s *Stream) { s.Device = "/dev/video2" }, []Change{{"device", "/dev/video0", "/dev/video2", EffectRestartSource}}},
		{"path", func(s *Stream) { s.Path = "/clip.h264" }, []Change{{"path", "", "/clip.h264", EffectRestartSource}}},
		{"loop", func(s *Stream) { s.Loop = true }, []Change{{"loop", "false", "true", EffectRestartSource}}},
		{"realtime", func(s *Stream) { s.Realtime = false }, []Change{{"realtime", "true", "false", EffectRestartSource}}},
		{"command", func(s *Stream) { s.Command = []string{"rpicam-vid", "-o", "-"} },
			[]Change{{"command", "[]", `["rpicam-vid", "-o", "-"]`, EffectRestartSource}}},
		{"width", func(s *Stream) { s.Width = 1920 }, []Change{{"width", "1280", "1920", EffectRestartSource}}},
		{"height", func(s *Stream) { s.Height = 1080 }, []Change{{"height", "720", "1080", EffectRestartSource}}},
		{"fps", func(s *Stream) { s.FPS = 15 }, []Change{{"fps", "30", "15", EffectRestartSource}}},
		{"bitrate", func(s *Stream) { s.Bitrate = 4_000_000 }, []Change{{"bitrate", "2000000", "4000000", EffectRestartSource}}},
		{"keyframe_interval", func(s *Stream) { s.KeyframeInterval = Duration(4 * time.Second) },
			[]Change{{"keyframe_interval", "2s", "4s", EffectRestartFragmenter}}},
		{"ring_size", func(s *Stream) { s.RingSize = 2 * GiB }, []Change{{"ring_size", "1GiB", "2GiB", EffectReopenRing}}},
		{"several, in field order", func(s *Stream) { s.RingSize = 2 * GiB; s.Mode = ModeRecord; s.FPS = 15 },
			[]Change{{"fps", "30", "15", EffectRestartSource}, {"ring_size", "1GiB", "2GiB", EffectReopenRing}, {"mode", "live", "record", EffectLive}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := DefaultStream()
			old.Name = "cam-1"
			new := old
			tc.edit(&new)
			if got := DiffStream(old, new); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DiffStream =\n %v\nwant\n %v", got, tc.want)
			}
		})
	}
}

func TestDiffDaemon(t *testing.T) {
	const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYzq9v"
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want []Change
	}{
		{"same", func(c *Config) {}, nil},
		{"streams are not daemon keys", func(c *Config) { c.Streams[0].FPS = 10; c.Streams = append(c.Streams, DefaultStream()) }, nil},
		{"log_level", func(c *Config) { c.LogLevel = LogDebug }, []Change{{"log_level", "info", "debug", EffectLive}}},
		{"region", func(c *Config) { c.Region = "us-east-1" }, []Change{{"region", "eu-west-1", "us-east-1", EffectRestartDaemon}}},
		{"thing_name", func(c *Config) { c.ThingName = "cam-2" }, []Change{{"thing_name", "cam-0001", "cam-2", EffectRestartDaemon}}},
		{"state_dir", func(c *Config) { c.StateDir = "/data" }, []Change{{"state_dir", DefaultStateDir, "/data", EffectRestartDaemon}}},
		{"clock_sync", func(c *Config) { c.ClockSync = ClockSyncTrust }, []Change{{"clock_sync", "wait", "trust", EffectRestartDaemon}}},
		{"credentials", func(c *Config) { c.Credentials.RoleAlias = "other" },
			[]Change{{"credentials.role_alias", "kvscamd", "other", EffectRestartDaemon}}},
		{"secret set", func(c *Config) { c.Credentials.SecretAccessKey = secret },
			[]Change{{"credentials.secret_access_key", "", "[redacted]", EffectRestartDaemon}}},
		{"kvs", func(c *Config) { c.KVS.CreateStream = true; c.KVS.Retention = Duration(48 * time.Hour) },
			[]Change{{"kvs.create_stream", "false", "true", EffectRestartDaemon}, {"kvs.retention", "24h0m0s", "48h0m0s", EffectRestartDaemon}}},
		{"mqtt", func(c *Config) { c.MQTT.Enabled = true }, []Change{{"mqtt.enabled", "false", "true", EffectRestartDaemon}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := mustParse(t, minimal)
			new := mustParse(t, minimal)
			tc.edit(new)
			if got := DiffDaemon(old, new); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DiffDaemon =\n %v\nwant\n %v", got, tc.want)
			}
		})
	}
}

// A changed secret shows that it changed, never either value.
func TestDiffDaemonSecretChanged(t *testing.T) {
	old := mustParse(t, minimal)
	new := mustParse(t, minimal)
	old.Credentials.SecretAccessKey, new.Credentials.SecretAccessKey = "old-secret-value", "new-secret-value"
	old.Credentials.SessionToken, new.Credentials.SessionToken = "old-token-value", ""
	got := DiffDaemon(old, new)
	want := []Change{
		{"credentials.secret_access_key", "[redacted]", "[redacted]", EffectRestartDaemon},
		{"credentials.session_token", "[redacted]", "", EffectRestartDaemon},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DiffDaemon =\n %v\nwant\n %v", got, want)
	}
	for _, c := range got {
		if s := c.String(); strings.Contains(s, "value") {
			t.Errorf("change repeats a secret: %s", s)
		}
	}
}

func TestDiffStreams(t *testing.T) {
	stream := func(name string, fps int) Stream {
		s := DefaultStream()
		s.Name, s.FPS = name, fps
		return s
	}
	for _, tc := range []struct {
		name           string
		old, new       []Stream
		added, removed []string
		changed        map[string][]Change
	}{
		{"same", []Stream{stream("a", 30)}, []Stream{stream("a", 30)}, nil, nil, nil},
		{"reordered is not a change", []Stream{stream("a", 30), stream("b", 30)}, []Stream{stream("b", 30), stream("a", 30)}, nil, nil, nil},
		{"added", []Stream{stream("a", 30)}, []Stream{stream("a", 30), stream("c", 30), stream("b", 30)}, []string{"c", "b"}, nil, nil},
		{"removed", []Stream{stream("a", 30), stream("b", 30), stream("c", 30)}, []Stream{stream("b", 30)}, nil, []string{"a", "c"}, nil},
		{"renamed", []Stream{stream("a", 30)}, []Stream{stream("b", 30)}, []string{"b"}, []string{"a"}, nil},
		{"changed", []Stream{stream("a", 30), stream("b", 30)}, []Stream{stream("a", 30), stream("b", 10)}, nil, nil,
			map[string][]Change{"b": {{"fps", "30", "10", EffectRestartSource}}}},
		{"all at once", []Stream{stream("a", 30), stream("b", 30)}, []Stream{stream("b", 25), stream("c", 30)}, []string{"c"}, []string{"a"},
			map[string][]Change{"b": {{"fps", "30", "25", EffectRestartSource}}}},
		{"duplicates compare the first", []Stream{stream("a", 30), stream("a", 5)}, []Stream{stream("a", 30), stream("a", 6)}, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, removed, changed := DiffStreams(&Config{Streams: tc.old}, &Config{Streams: tc.new})
			if !reflect.DeepEqual(added, tc.added) || !reflect.DeepEqual(removed, tc.removed) || !reflect.DeepEqual(changed, tc.changed) {
				t.Errorf("DiffStreams = %v, %v, %v; want %v, %v, %v", added, removed, changed, tc.added, tc.removed, tc.changed)
			}
		})
	}
}

func TestEffectString(t *testing.T) {
	for e, want := range map[Effect]string{
		EffectLive: "live", EffectRestartSource: "restart source", EffectRestartFragmenter: "restart fragmenter",
		EffectReopenRing: "reopen ring", EffectRestartDaemon: "restart daemon", 0: "Effect(0)",
	} {
		if got := e.String(); got != want {
			t.Errorf("%d: %q, want %q", int(e), got, want)
		}
	}
}
