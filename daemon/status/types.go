// Package status is the daemon's local control surface: the plain values
// that describe a running kvscamd (Status, StreamStatus), the operator
// actions it accepts (Command, Result), and an HTTP server and client for
// them over a unix socket in the runtime directory.
//
// The values here are what every front-end shows and sends: `kvscamd
// status`, `kvscamd upload` and `kvscamd capture` over the socket today, MQTT
// commands and telemetry tomorrow. They carry no secret: credential status
// names its source and expiry, never a key.
package status

import (
	"errors"
	"fmt"
	"time"
)

// DefaultSocket is where `kvscamd run` listens and the CLI connects
// unless told otherwise. systemd creates the directory (RuntimeDirectory=).
const DefaultSocket = "/run/kvscamd/kvscamd.sock"

// SocketGroup is the group that owns the socket; operators join it to use
// `kvscamd status` without root.
const SocketGroup = "kvscamd"

// Status describes the whole daemon.
type Status struct {
	Version   string        `json:"version"`
	Started   time.Time     `json:"started"`
	Uptime    Duration      `json:"uptime"`
	Clock     ClockStatus   `json:"clock"`
	Creds     CredsStatus   `json:"credentials"`
	MQTT      MQTTStatus    `json:"mqtt"`
	Streams   []Stream      `json:"streams"`
	LastError *ErrorAt      `json:"last_error,omitempty"`
	Config    ConfigSummary `json:"config"`
	// Goroutines is the daemon's goroutine count when the status was
	// served, for leak checks (a steady daemon keeps it flat).
	Goroutines int `json:"goroutines,omitempty"`
}

// ClockStatus says whether wall-clock time can be trusted.
type ClockStatus struct {
	Synchronized bool   `json:"synchronized"`
	Mode         string `json:"mode"` // clock_sync: wait or trust
}

// CredsStatus describes the credentials every stream signs with.
type CredsStatus struct {
	Source      string    `json:"source"` // iot, static, default
	State       string    `json:"state"`  // "ok", "not available yet: …"
	Expires     time.Time `json:"expires,omitzero"`
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	Refreshes   uint64    `json:"refreshes"`
	Failures    uint64    `json:"failures"`
	LastError   string    `json:"last_error,omitempty"`
}

// MQTTStatus is the state of the MQTT connection.
type MQTTStatus struct {
	Enabled bool   `json:"enabled"`
	State   string `json:"state"`
}

// ConfigSummary names the configuration in force.
type ConfigSummary struct {
	Path     string    `json:"path,omitempty"`
	Loaded   time.Time `json:"loaded"`
	StateDir string    `json:"state_dir"`
}

// ErrorAt is an error message and when it happened.
type ErrorAt struct {
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// Stream describes one camera's chain.
type Stream struct {
	Name    string `json:"name"`
	Source  string `json:"source"` // e.g. "v4l2 /dev/video0"
	State   string `json:"state"`  // one line: "capturing", "capture off", …
	Capture bool   `json:"capture"`
	Mode    string `json:"mode"` // live or record

	FPS     float64 `json:"fps"`         // measured over the last seconds
	Bitrate float64 `json:"bitrate_bps"` // measured, bits per second

	FramesCaptured uint64 `json:"frames_captured"`
	FramesDropped  uint64 `json:"frames_dropped"`

	FragmentsStored   uint64 `json:"fragments_stored"`
	FragmentsAcked    uint64 `json:"fragments_acked"`
	FragmentsLost     uint64 `json:"fragments_lost"` // evicted unacknowledged: data loss
	FragmentsSkipped  uint64 `json:"fragments_skipped"`
	FragmentsUnacked  int    `json:"fragments_unacked"`
	AppendErrors      uint64 `json:"append_errors"`
	RingBytesUsed     int64  `json:"ring_bytes_used"`
	RingBytesCapacity int64  `json:"ring_bytes_capacity"`
	// RingBytesEffective is what the ring can hold on its filesystem:
	// RingBytesCapacity, or less when ring_size exceeds the filesystem.
	RingBytesEffective int64 `json:"ring_bytes_effective"`

	OldestUnacked    time.Time `json:"oldest_unacked,omitzero"`
	OldestUnackedAge Duration  `json:"oldest_unacked_age"`
	NewestStored     time.Time `json:"newest_stored,omitzero"`
	NewestAcked      time.Time `json:"newest_acked,omitzero"`
	// LiveLag is newest stored minus newest acknowledged: how far the
	// cloud is behind the camera.
	LiveLag Duration `json:"live_lag"`

	Uploader  UploaderStatus `json:"uploader"`
	LastError *ErrorAt       `json:"last_error,omitempty"`
}

// UploaderStatus is the sender's side of a stream.
type UploaderStatus struct {
	State       string `json:"state"`
	Alert       string `json:"alert,omitempty"` // set while a person must act
	RateLimit   int64  `json:"rate_limit_bps"`  // bytes per second; 0 = service quota only
	Connections uint64 `json:"connections"`
	BytesSent   uint64 `json:"bytes_sent"`
	// UploadOrder is "live-first" or "in-order". LiveLag is how far the
	// cloud is behind live video; the backlog (what an outage left, sent
	// in the spare capacity) is described by its size and the age of its
	// oldest fragment.
	UploadOrder  string   `json:"upload_order,omitempty"`
	LiveLag      Duration `json:"live_lag"`
	Backlog      int      `json:"backlog_fragments"`
	BacklogBytes int64    `json:"backlog_bytes"`
	BacklogAge   Duration `json:"backlog_age"`
	// SetAside counts fragments that kept failing and were put aside
	// (kept, retried later) so the stream could go on.
	SetAside      int    `json:"set_aside"`
	SetAsideTotal uint64 `json:"set_aside_total"`
	// Stale counts connections dropped for taking data without
	// acknowledging it.
	Stale uint64 `json:"stale_connections"`
	// ClockOffset is the correction applied when signing because the
	// service refused the device's time.
	ClockOffset Duration `json:"clock_offset,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as a number of
// seconds, which scripts handle more easily than Go's duration strings.
type Duration time.Duration

// MarshalJSON writes the duration in seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", time.Duration(d).Seconds()), nil
}

// UnmarshalJSON reads a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if _, err := fmt.Sscan(string(b), &s); err != nil {
		return fmt.Errorf("duration %s: want a number of seconds", b)
	}
	*d = Duration(s * float64(time.Second))
	return nil
}

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Operations a Command can ask for.
const (
	OpPing    = "ping"    // is the daemon there
	OpStatus  = "status"  // Result.Status
	OpCapture = "capture" // Stream, On
	OpUpload  = "upload"  // Stream, From, To
	OpRestart = "restart" // Stream: stop and start its chain again
	OpReload  = "reload"  // read the configuration file again
	OpSet     = "set"     // Stream, Settings: change one stream's settings live
	// OpRenew renews a fleet-provisioned device certificate now.
	OpRenew = "renew-certificate"
)

// Ops lists every operation, for error messages.
var Ops = []string{OpPing, OpStatus, OpCapture, OpUpload, OpRestart, OpReload, OpSet, OpRenew}

// Command is one operator action.
type Command struct {
	Op     string    `json:"op"`
	Stream string    `json:"stream,omitempty"`
	On     *bool     `json:"on,omitempty"`
	From   time.Time `json:"from,omitzero"`
	To     time.Time `json:"to,omitzero"`
	Settings
}

// Settings are the stream keys OpSet changes, spelt as in the
// configuration file; a missing key keeps its value.
type Settings struct {
	Mode             string `json:"mode,omitempty"`              // live or record
	UploadRateLimit  string `json:"upload_rate_limit,omitempty"` // "2MB/s"; "0" = unlimited
	KeyframeInterval string `json:"keyframe_interval,omitempty"` // "2s"
	Bitrate          *int   `json:"bitrate,omitempty"`           // bits per second
	FPS              *int   `json:"fps,omitempty"`
	Width            *int   `json:"width,omitempty"`
	Height           *int   `json:"height,omitempty"`
}

// Empty reports whether s changes nothing.
func (s Settings) Empty() bool { return s == Settings{} }

// Result is what an action did.
type Result struct {
	Message string   `json:"message"`
	Changes []Change `json:"changes,omitempty"`
	// Fragments and Bytes are what an upload queued.
	Fragments int     `json:"fragments,omitempty"`
	Bytes     int64   `json:"bytes,omitempty"`
	Status    *Status `json:"status,omitempty"`
}

// Change is one setting that a reload changed, and what it took.
type Change struct {
	Stream string `json:"stream,omitempty"` // empty for daemon-wide keys
	Key    string `json:"key"`
	Old    string `json:"old"`
	New    string `json:"new"`
	// Effect says how it was applied: "live", "source restarted",
	// "stream restarted", "needs a daemon restart".
	Effect string `json:"effect"`
}

// Reason codes of a refused command. They follow AWS IoT's reasonCode
// pattern ([A-Z0-9_-]{1,64}) so MQTT can pass them on unchanged.
const (
	CodeBadRequest    = "BAD_REQUEST"
	CodeUnknownOp     = "UNKNOWN_OP"
	CodeUnknownStream = "UNKNOWN_STREAM"
	CodeBadArgument   = "BAD_ARGUMENT"
	CodeUnavailable   = "UNAVAILABLE"
	CodeInvalidConfig = "INVALID_CONFIG"
	CodeInternal      = "INTERNAL"
)

// Error is a refused or failed command: a reason code and a message that
// names the problem and the fix.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the reason code of err: its own if it is an *Error,
// CodeInternal otherwise.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
