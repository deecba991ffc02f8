package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/internal/kvs"
)

// Limits enforced by Validate. Most come from KVS quotas: exceeding them
// would make uploads fail at run time, far from the file that caused it.
const (
	// MaxKeyframeInterval is the longest KVS accepts for one fragment; a
	// fragment spans one GOP.
	MaxKeyframeInterval = 10 * time.Second
	// MinKeyframeInterval is the shortest fragment KVS accepts.
	MinKeyframeInterval = time.Second
	// MinMaxLiveLag and MaxMaxLiveLag bound max_live_lag: below a couple
	// of seconds every live fragment would switch connections; above a
	// few minutes live video is not live.
	MinMaxLiveLag = 2 * time.Second
	MaxMaxLiveLag = 10 * time.Minute
	// MaxFragmentSize is the largest fragment KVS accepts.
	MaxFragmentSize = 50 * MB
	// MaxBitrate is KVS's per-stream ingest quota of 12.5 MB/s, in bits/s.
	MaxBitrate = 100_000_000
	// MinRingSize keeps room for several fragments at any sane bitrate, so
	// that the ring can drop the oldest fragment without stalling capture.
	MinRingSize = 16 * MiB
	// MaxThingNameLen is AWS IoT's limit on thing names.
	MaxThingNameLen = 128
	MinFPS          = 1
	MaxFPS          = 120
	MinDimension    = 16
	MaxDimension    = 8192
	// MinTelemetryInterval keeps telemetry from eating into the MQTT
	// message quota.
	MinTelemetryInterval = time.Second
	// MinMQTTKeepAlive and MaxMQTTKeepAlive are what AWS IoT Core
	// accepts: it treats less as 30 s and refuses more.
	MinMQTTKeepAlive = 30 * time.Second
	MaxMQTTKeepAlive = 1200 * time.Second
	// MaxRetention is the longest data retention KVS allows (10 years);
	// KVS counts retention in whole hours.
	MaxRetention = 87600 * time.Hour
)

var (
	thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]+$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)*-[0-9]+$`)
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key     string // e.g. "stream[0].fps"
	Message string // what is wrong and how to fix it
}

func (p Problem) String() string { return p.Key + ": " + p.Message }

// Problems is every problem Validate found; it is the error it returns.
type Problems []Problem

func (ps Problems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, "\n")
}

// Validate checks every value and returns all problems at once as
// Problems, or nil.
func (c *Config) Validate() error {
	var v validator
	c.validateTop(&v)
	c.Credentials.validate(&v, c.ProvisioningPending())
	c.KVS.validate(&v)
	c.MQTT.validate(&v)
	c.Provisioning.validate(&v)
	c.validateStreams(&v)
	if len(v) == 0 {
		return nil
	}
	return Problems(v)
}

type validator Problems

func (v *validator) add(key, format string, args ...any) {
	*v = append(*v, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// required reports an empty value with an example of a good one.
func (v *validator) required(key, value, example string) bool {
	if strings.TrimSpace(value) == "" {
		v.add(key, "required; set %s = %s", lastPiece(key), example)
		return false
	}
	return true
}

// oneOf reports a value outside allowed, naming the allowed ones.
func oneOf[T ~string](v *validator, key string, value T, allowed ...T) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(string(a))
	}
	v.add(key, "must be one of %s, got %q; set %s = %s", strings.Join(quoted, ", "), value, lastPiece(key), quoted[0])
}

func lastPiece(key string) string {
	return key[strings.LastIndex(key, ".")+1:]
}

func (c *Config) validateTop(v *validator) {
	if c.IdentityErr != nil {
		v.add("provisioning.dir", "%v", c.IdentityErr)
	}
	// Until fleet provisioning has run, the cloud has not named the thing
	// yet: an empty thing_name is expected then.
	unnamed := c.ProvisioningPending() && c.ThingName == ""
	if !unnamed && v.required("thing_name", c.ThingName, `"cam-0001"`) {
		if len(c.ThingName) > MaxThingNameLen || !thingNameRE.MatchString(c.ThingName) {
			v.add("thing_name", "%q is not a valid AWS IoT thing name; use 1..%d of a-z A-Z 0-9 : _ -", c.ThingName, MaxThingNameLen)
		}
	}
	if v.required("region", c.Region, `"eu-west-1"`) && !regionRE.MatchString(c.Region) {
		v.add("region", "%q does not look like an AWS region; set e.g. region = \"eu-west-1\"", c.Region)
	}
	if v.required("state_dir", c.StateDir, strconv.Quote(DefaultStateDir)) && !filepath.IsAbs(c.StateDir) {
		v.add("state_dir", "must be an absolute path, got %q; set e.g. state_dir = %q", c.StateDir, DefaultStateDir)
	}
	oneOf(v, "log_level", c.LogLevel, LogInfo, LogDebug, LogWarn, LogError)
	oneOf(v, "clock_sync", c.ClockSync, ClockSyncWait, ClockSyncTrust)
}

// validate checks the table; pending (fleet provisioning not done yet)
// allows the device certificate to be missing, as provisioning creates it.
func (cr *Credentials) validate(v *validator, pending bool) {
	oneOf(v, "credentials.source", cr.Source, CredentialsIoT, CredentialsStatic, CredentialsDefault)
	switch cr.Source {
	case CredentialsIoT:
		if v.required("credentials.endpoint", cr.Endpoint, `"xxxx.credentials.iot.eu-west-1.amazonaws.com" (aws iot describe-endpoint --endpoint-type iot:CredentialProvider)`) {
			if strings.ContainsAny(cr.Endpoint, " \t\n") {
				v.add("credentials.endpoint", "%q is not a host name; set it to the host from aws iot describe-endpoint --endpoint-type iot:CredentialProvider", cr.Endpoint)
			}
		}
		v.required("credentials.role_alias", cr.RoleAlias, `"kvscamd" (the IoT role alias that grants KVS access)`)
		if !pending {
			v.required("credentials.cert", cr.Cert, `"/etc/kvscamd/certs/device.pem.crt"`)
			v.required("credentials.key", cr.Key, `"/etc/kvscamd/certs/private.pem.key"`)
		}
	case CredentialsStatic:
		v.required("credentials.access_key_id", cr.AccessKeyID, `"AKIA..."`)
		v.required("credentials.secret_access_key", cr.SecretAccessKey.Reveal(), `"..."`)
	}
}

func (k *KVS) validate(v *validator) {
	if k.Endpoint != "" {
		u, err := url.Parse(k.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("kvs.endpoint", "%q is not an http(s) URL; set e.g. endpoint = \"http://127.0.0.1:8080\", or \"\" for the AWS endpoint", k.Endpoint)
		}
	}
	r := k.Retention.Std()
	switch {
	case r < 0 || r > MaxRetention:
		v.add("kvs.retention", "must be 0 (no retention) to %s, got %s; set retention = \"24h\"", durationHours(MaxRetention), k.Retention)
	case r%time.Hour != 0:
		v.add("kvs.retention", "KVS keeps data in whole hours, got %s; set retention = %q", k.Retention, durationHours((r/time.Hour+1)*time.Hour))
	}
}

// durationHours writes a whole number of hours the way a user would.
func durationHours(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
}

func (m *MQTT) validate(v *validator) {
	if !m.Enabled {
		return
	}
	if v.required("mqtt.endpoint", m.Endpoint, `"xxxx-ats.iot.eu-west-1.amazonaws.com:8883" (aws iot describe-endpoint --endpoint-type iot:Data-ATS)`) {
		if _, port, err := net.SplitHostPort(m.Endpoint); err != nil || port == "" {
			v.add("mqtt.endpoint", "%q must be host:port; set e.g. endpoint = \"%s:8883\"", m.Endpoint, strings.TrimSuffix(m.Endpoint, ":"))
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.add("mqtt.endpoint", "port %q of %q is not a port number; AWS IoT listens on 8883, or 443 with ALPN", port, m.Endpoint)
		}
	}
	if k := m.KeepAlive.Std(); k < MinMQTTKeepAlive || k > MaxMQTTKeepAlive {
		v.add("mqtt.keep_alive", "must be from %s to %s (what AWS IoT accepts), got %s; set keep_alive = \"300s\"", MinMQTTKeepAlive, MaxMQTTKeepAlive, m.KeepAlive)
	}
	if m.TelemetryInterval.Std() < MinTelemetryInterval {
		v.add("mqtt.telemetry_interval", "must be at least %s, got %s; set telemetry_interval = \"60s\"", MinTelemetryInterval, m.TelemetryInterval)
	}
	v.required("mqtt.cert", m.Cert, `"/etc/kvscamd/certs/device.pem.crt" (or set credentials.cert)`)
	v.required("mqtt.key", m.Key, `"/etc/kvscamd/certs/private.pem.key" (or set credentials.key)`)
}

func (c *Config) validateStreams(v *validator) {
	if len(c.Streams) == 0 {
		v.add("stream", "no streams; add a [[stream]] table")
	}
	seen := map[string]int{}
	for i := range c.Streams {
		s := &c.Streams[i]
		key := fmt.Sprintf("stream[%d]", i)
		if s.Name == "" && c.ProvisioningPending() {
			// Named after the thing once it is provisioned.
			continue
		}
		s.validate(v, key)
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			v.add(key+".name", "%q is already the name of stream[%d]; give every stream its own name", s.Name, j)
		} else {
			seen[s.Name] = i
		}
	}
}

func (s *Stream) validate(v *validator, key string) {
	switch {
	case s.Name == "":
		v.add(key+".name", "required; set name = \"cam-0001\" (it defaults to thing_name)")
	default:
		// The same rule run applies before it opens the ring directory
		// named after the stream, so check cannot pass a name run refuses.
		if err := kvs.CheckStreamName(s.Name); err != nil {
			v.add(key+".name", "%v", err)
		}
	}
	oneOf(v, key+".driver", s.Driver, DriverV4L2, DriverFile, DriverExec)
	switch s.Driver {
	case DriverV4L2:
		v.required(key+".device", s.Device, strconv.Quote(DefaultDevice))
	case DriverFile:
		v.required(key+".path", s.Path, `"/path/to/clip.h264" (an Annex-B H.264 file)`)
	case DriverExec:
		if len(s.Command) == 0 || strings.TrimSpace(s.Command[0]) == "" {
			v.add(key+".command", `required for driver "exec"; set command = ["rpicam-vid", "-t", "0", "--codec", "h264", "-o", "-"]`)
		}
	}
	rangeInt(v, key+".width", s.Width, MinDimension, MaxDimension, DefaultWidth)
	rangeInt(v, key+".height", s.Height, MinDimension, MaxDimension, DefaultHeight)
	rangeInt(v, key+".fps", s.FPS, MinFPS, MaxFPS, DefaultFPS)
	rangeInt(v, key+".bitrate", s.Bitrate, 1, MaxBitrate, DefaultBitrate)

	ki := s.KeyframeInterval.Std()
	switch {
	case ki <= 0 || ki > MaxKeyframeInterval:
		v.add(key+".keyframe_interval", "must be more than 0 and at most %s (the longest KVS fragment), got %s; set keyframe_interval = \"2s\"", MaxKeyframeInterval, s.KeyframeInterval)
	case ki < MinKeyframeInterval:
		v.add(key+".keyframe_interval", "%s is below %s, the shortest fragment KVS takes (and faster than its 5 fragments/s quota allows below 200ms); set keyframe_interval = \"2s\"", s.KeyframeInterval, MinKeyframeInterval)
	case s.Bitrate > 0 && Size(int64(s.Bitrate)/8*int64(ki)/int64(time.Second)) > MaxFragmentSize:
		v.add(key+".keyframe_interval", "%s at %d bit/s makes fragments larger than KVS's %s limit; lower keyframe_interval or bitrate", s.KeyframeInterval, s.Bitrate, MaxFragmentSize)
	}
	if s.RingSize < MinRingSize {
		v.add(key+".ring_size", "must be at least %s, got %s; set ring_size = \"1GiB\"", MinRingSize, s.RingSize)
	}
	oneOf(v, key+".mode", s.Mode, ModeLive, ModeRecord)
	oneOf(v, key+".upload_order", s.UploadOrder, UploadLiveFirst, UploadInOrder)
	if lag := s.MaxLiveLag.Std(); lag < MinMaxLiveLag || lag > MaxMaxLiveLag {
		v.add(key+".max_live_lag", "must be between %s and %s, got %s; set max_live_lag = \"10s\"", MinMaxLiveLag, MaxMaxLiveLag, s.MaxLiveLag)
	}
	if s.Mode == ModeLive && s.UploadRateLimit > 0 && s.Bitrate > 0 && int64(s.UploadRateLimit)*8 < int64(s.Bitrate) {
		v.add(key+".upload_rate_limit", "%s is below the stream's bitrate of %d bit/s, so live upload could never catch up; set at least %s or \"0\" (unlimited)", s.UploadRateLimit, s.Bitrate, Rate((s.Bitrate+7)/8).String())
	}
}

func rangeInt(v *validator, key string, got, lo, hi, def int) {
	if got < lo || got > hi {
		v.add(key, "must be %d..%d, got %d; set %s = %d", lo, hi, got, lastPiece(key), def)
	}
}
