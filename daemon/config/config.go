// Package config reads kvscamd's TOML configuration file into typed values,
// fills in the documented defaults and checks the result.
//
// Loading is strict on purpose: a misspelt key would otherwise silently fall
// back to its default on a device nobody is looking at, so unknown keys are
// errors that name the key and its line. Validate reports every problem at
// once, each with the key and a fix, so that one edit-check cycle is enough.
package config

import (
	"log/slog"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/credentials/identity"
)

// DefaultPath is where the service looks for its configuration file.
const DefaultPath = "/etc/kvscamd/kvscamd.toml"

// Defaults of the top-level keys and tables. Stream defaults are in
// DefaultStream.
const (
	DefaultStateDir          = "/var/lib/kvscamd"
	DefaultLogLevel          = LogInfo
	DefaultClockSync         = ClockSyncWait
	DefaultCredentialsSource = CredentialsIoT
	DefaultRetention         = 24 * time.Hour
	DefaultTelemetryInterval = 60 * time.Second
	DefaultMQTTKeepAlive     = 300 * time.Second
	// DefaultRenewBefore renews a provisioned certificate a month before
	// it expires: time enough for a camera that is offline for weeks.
	DefaultRenewBefore = 30 * 24 * time.Hour
	DefaultKeyType     = KeyECDSAP256
)

// Stream defaults.
const (
	DefaultDriver           = DriverV4L2
	DefaultDevice           = "/dev/video0"
	DefaultWidth            = 1280
	DefaultHeight           = 720
	DefaultFPS              = 30
	DefaultBitrate          = 2_000_000 // bits per second
	DefaultKeyframeInterval = 2 * time.Second
	DefaultRingSize         = 1 * GiB
	DefaultMode             = ModeLive
	DefaultUploadOrder      = UploadLiveFirst
	DefaultMaxLiveLag       = 10 * time.Second
)

// LogLevel is the value of log_level.
type LogLevel string

// Allowed log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// Slog maps the level onto log/slog; unknown values map to Info, which
// Validate has already rejected.
func (l LogLevel) Slog() slog.Level {
	switch l {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ClockSync is the value of clock_sync.
type ClockSync string

const (
	// ClockSyncWait holds uploads until the kernel reports a synchronised
	// clock, because KVS rejects or misfiles fragments with wrong timestamps.
	ClockSyncWait ClockSync = "wait"
	// ClockSyncTrust uploads even though the kernel says the clock is not
	// synchronised; for VMs and containers whose clock comes from the host.
	ClockSyncTrust ClockSync = "trust"
)

// CredentialsSource is the value of credentials.source.
type CredentialsSource string

// Allowed credential sources.
const (
	CredentialsIoT     CredentialsSource = "iot"     // AWS IoT credentials provider, mutual TLS
	CredentialsStatic  CredentialsSource = "static"  // keys written in the file
	CredentialsDefault CredentialsSource = "default" // AWS_* environment, then static keys in ~/.aws/credentials or ~/.aws/config
)

// Driver is the value of stream.driver.
type Driver string

// Allowed drivers.
const (
	DriverV4L2 Driver = "v4l2" // a V4L2 camera that encodes H.264 itself
	DriverFile Driver = "file" // an Annex-B H.264 file, replayed
	DriverExec Driver = "exec" // a child process writing Annex-B H.264 to stdout
)

// Mode is the value of stream.mode.
type Mode string

// Allowed modes.
const (
	ModeLive   Mode = "live"   // upload as captured
	ModeRecord Mode = "record" // keep in the ring, upload on demand
)

// Config is the whole configuration file. Field tags are the binding key
// names.
type Config struct {
	// ThingName is the AWS IoT thing name: MQTT client id, the
	// x-amzn-iot-thingname header and the default stream name.
	ThingName string `toml:"thing_name"`
	// Region is the AWS region of KVS and IoT, e.g. "eu-west-1".
	Region string `toml:"region"`
	// StateDir holds the ring buffers, one folder per stream.
	StateDir string `toml:"state_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel LogLevel `toml:"log_level"`
	// ClockSync says whether to wait for a synchronised system clock.
	ClockSync ClockSync `toml:"clock_sync"`

	Credentials Credentials `toml:"credentials"`
	KVS         KVS         `toml:"kvs"`
	MQTT        MQTT        `toml:"mqtt"`
	// Provisioning, when its template is set, gives the device its thing
	// name and certificate by AWS IoT fleet provisioning.
	Provisioning Provisioning `toml:"provisioning"`
	// Streams are the [[stream]] tables. A file without any gets one
	// stream with all defaults.
	Streams []Stream `toml:"stream"`

	// Identity is the provisioned identity found in Provisioning.Dir when
	// the file was loaded; nil when provisioning is off or not done yet.
	// It overrides thing_name and the device certificate.
	Identity *identity.Identity `toml:"-"`
	// IdentityErr is why a provisioned identity could not be read.
	IdentityErr error `toml:"-"`
}

// ProvisioningPending says whether the device waits for fleet
// provisioning: until it is done there is no thing name or certificate,
// and `kvscamd run` provisions before anything else.
func (c *Config) ProvisioningPending() bool {
	return c.Provisioning.Enabled() && c.Identity == nil
}

// Credentials is the [credentials] table.
type Credentials struct {
	Source CredentialsSource `toml:"source"`

	// Used by source = "iot".
	Endpoint  string `toml:"endpoint"` // <prefix>.credentials.iot.<region>.amazonaws.com
	RoleAlias string `toml:"role_alias"`
	Cert      string `toml:"cert"` // device certificate, PEM
	Key       string `toml:"key"`  // device private key, PEM
	CA        string `toml:"ca"`   // CA bundle for the endpoint; empty = system roots

	// Used by source = "static".
	AccessKeyID string `toml:"access_key_id"`
	// Secrets print as "[redacted]" in logs, errors and %+v output.
	SecretAccessKey credentials.Secret `toml:"secret_access_key"`
	SessionToken    credentials.Secret `toml:"session_token"`
}

// KVS is the [kvs] table.
type KVS struct {
	// Endpoint overrides the control-plane URL, e.g. a local endpoint.
	Endpoint string `toml:"endpoint"`
	// CreateStream creates missing streams with Retention.
	CreateStream bool `toml:"create_stream"`
	// Retention is the data retention of streams this daemon creates;
	// 0 means no retention.
	Retention Duration `toml:"retention"`
}

// MQTT is the [mqtt] table.
type MQTT struct {
	Enabled bool `toml:"enabled"`
	// Endpoint is host:port of the AWS IoT Core data endpoint. Port 443
	// connects with the ALPN protocol x-amzn-mqtt-ca, any other port
	// (8883 on AWS) with plain MQTT over TLS.
	Endpoint string `toml:"endpoint"`
	// KeepAlive is the MQTT keep-alive; AWS IoT accepts 30s to 1200s.
	KeepAlive         Duration `toml:"keep_alive"`
	TelemetryInterval Duration `toml:"telemetry_interval"`
	// Commands subscribes to AWS IoT commands. An account without the
	// feature may drop connections that subscribe to it: turn it off.
	Commands bool `toml:"commands"`
	// Shadow follows the named shadow "kvscamd".
	Shadow bool `toml:"shadow"`
	// Jobs runs AWS IoT jobs.
	Jobs bool `toml:"jobs"`
	// Cert, Key and CA default to the [credentials] ones.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	CA   string `toml:"ca"`
}

// Provisioning is the [provisioning] table: fleet provisioning by claim.
type Provisioning struct {
	// Template is the fleet provisioning template's name; empty turns
	// provisioning off.
	Template string `toml:"template"`
	// Endpoint is the AWS IoT data endpoint, host:port; defaults to
	// mqtt.endpoint.
	Endpoint string `toml:"endpoint"`
	// ClaimCert and ClaimKey are the claim certificate shared by the
	// fleet; it is used for nothing but provisioning.
	ClaimCert string `toml:"claim_cert"`
	ClaimKey  string `toml:"claim_key"`
	// CA verifies the endpoint; defaults to mqtt.ca, then the system roots.
	CA string `toml:"ca"`
	// Dir keeps the device's own key and certificate; defaults to
	// <state_dir>/identity.
	Dir string `toml:"dir"`
	// SerialNumber is the template's SerialNumber parameter; empty reads
	// the device tree serial number, then /etc/machine-id, then a MAC
	// address.
	SerialNumber string `toml:"serial_number"`
	// Parameters are further template parameters.
	Parameters map[string]string `toml:"parameters"`
	// KeyType of the device key: "ecdsa-p256" or "rsa-2048".
	KeyType KeyType `toml:"key_type"`
	// RenewBefore renews the device certificate this long before it
	// expires.
	RenewBefore Duration `toml:"renew_before"`
}

// KeyType is the value of provisioning.key_type.
type KeyType string

// Allowed key types: what AWS IoT accepts in a CSR.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyRSA2048   KeyType = "rsa-2048"
)

// Enabled says whether fleet provisioning is configured.
func (p *Provisioning) Enabled() bool { return p.Template != "" }

// Store is the identity directory.
func (p *Provisioning) Store() identity.Store { return identity.Store{Dir: p.Dir} }

// Stream is one [[stream]] table: a camera and the KVS stream it feeds.
type Stream struct {
	// Name is the KVS stream name; defaults to thing_name.
	Name   string `toml:"name"`
	Driver Driver `toml:"driver"`

	Device   string   `toml:"device"`   // v4l2: device node
	Path     string   `toml:"path"`     // file: Annex-B H.264 file
	Loop     bool     `toml:"loop"`     // file: start over at the end
	Realtime bool     `toml:"realtime"` // file: pace at fps; false = as fast as possible
	Command  []string `toml:"command"`  // exec: argv writing Annex-B H.264 to stdout
	// PTSFile (exec) is where the command writes each frame's capture
	// time, in the "timecode format v2" text form (rpicam-vid
	// --save-pts); kvscamd makes it a FIFO. Empty: arrival times are
	// smoothed onto fps instead.
	PTSFile string `toml:"pts_file"`

	Width   int `toml:"width"`
	Height  int `toml:"height"`
	FPS     int `toml:"fps"`
	Bitrate int `toml:"bitrate"` // bits per second
	// KeyframeInterval is the GOP length, which is also the target
	// fragment duration because every fragment starts on a key frame.
	KeyframeInterval Duration `toml:"keyframe_interval"`
	// RingSize bounds the on-disk ring buffer of this stream.
	RingSize        Size `toml:"ring_size"`
	Mode            Mode `toml:"mode"`
	UploadRateLimit Rate `toml:"upload_rate_limit"` // 0 = unlimited
	// UploadOrder: live-first keeps live video current while a backlog
	// drains in the spare capacity; in-order sends oldest first.
	UploadOrder UploadOrder `toml:"upload_order"`
	// MaxLiveLag bounds how far live video falls behind a draining
	// backlog (live-first), as long as the link carries the bitrate.
	MaxLiveLag Duration `toml:"max_live_lag"`
}

// UploadOrder is the value of stream.upload_order.
type UploadOrder string

// Upload orders.
const (
	UploadLiveFirst UploadOrder = "live-first" // live video first, backlog in spare capacity
	UploadInOrder   UploadOrder = "in-order"   // oldest first, then live
)

// Default returns the configuration used for keys the file leaves out.
// ThingName and Region have no useful default and stay empty.
func Default() Config {
	return Config{
		StateDir:    DefaultStateDir,
		LogLevel:    DefaultLogLevel,
		ClockSync:   DefaultClockSync,
		Credentials: Credentials{Source: DefaultCredentialsSource},
		KVS:         KVS{Retention: Duration(DefaultRetention)},
		MQTT: MQTT{
			KeepAlive:         Duration(DefaultMQTTKeepAlive),
			TelemetryInterval: Duration(DefaultTelemetryInterval),
			Commands:          true,
			Shadow:            true,
			Jobs:              true,
		},
		Provisioning: Provisioning{KeyType: DefaultKeyType, RenewBefore: Duration(DefaultRenewBefore)},
		Streams:      []Stream{DefaultStream()},
	}
}

// DefaultStream returns a stream with every default filled in except Name,
// which follows thing_name (see Config.fillDerived).
func DefaultStream() Stream {
	return Stream{
		Driver:           DefaultDriver,
		Device:           DefaultDevice,
		Realtime:         true,
		Width:            DefaultWidth,
		Height:           DefaultHeight,
		FPS:              DefaultFPS,
		Bitrate:          DefaultBitrate,
		KeyframeInterval: Duration(DefaultKeyframeInterval),
		RingSize:         DefaultRingSize,
		Mode:             DefaultMode,
		UploadOrder:      DefaultUploadOrder,
		MaxLiveLag:       Duration(DefaultMaxLiveLag),
	}
}

// fillDerived applies the defaults that depend on other keys: stream names
// follow thing_name and MQTT reuses the device certificate.
func (c *Config) fillDerived() {
	c.applyIdentity()
	for i := range c.Streams {
		if c.Streams[i].Name == "" {
			c.Streams[i].Name = c.ThingName
		}
	}
	if c.MQTT.Cert == "" {
		c.MQTT.Cert = c.Credentials.Cert
	}
	if c.MQTT.Key == "" {
		c.MQTT.Key = c.Credentials.Key
	}
	if c.MQTT.CA == "" {
		c.MQTT.CA = c.Credentials.CA
	}
}
