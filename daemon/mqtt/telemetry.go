package mqtt

import (
	"context"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
)

// Telemetry is what the daemon publishes every telemetry_interval: the
// parts of its status that matter to someone watching a fleet.
type Telemetry struct {
	Time              time.Time         `json:"time"`
	Uptime            status.Duration   `json:"uptime"`
	ClockSynchronized bool              `json:"clock_synchronized"`
	CredentialsState  string            `json:"credentials_state"`
	CredentialsExpire time.Time         `json:"credentials_expire,omitzero"`
	Streams           []StreamTelemetry `json:"streams"`
}

// StreamTelemetry is one stream's part of Telemetry.
type StreamTelemetry struct {
	Name             string          `json:"name"`
	State            string          `json:"state"`
	FPS              float64         `json:"fps"`
	Bitrate          float64         `json:"bitrate_bps"`
	RingFill         float64         `json:"ring_fill"` // used / capacity, 0..1
	OldestUnackedAge status.Duration `json:"oldest_unacked_age"`
	LiveLag          status.Duration `json:"live_lag"`
	FramesDropped    uint64          `json:"frames_dropped"`
	FragmentsLost    uint64          `json:"fragments_lost"`
	FragmentsSkipped uint64          `json:"fragments_set_aside"`
	LastError        string          `json:"last_error,omitempty"`
}

// NewTelemetry picks the telemetry out of a status snapshot.
func NewTelemetry(st status.Status, now time.Time) Telemetry {
	t := Telemetry{
		Time: now.UTC(), Uptime: st.Uptime, ClockSynchronized: st.Clock.Synchronized,
		CredentialsState: st.Creds.State, CredentialsExpire: st.Creds.Expires,
		Streams: []StreamTelemetry{},
	}
	for _, s := range st.Streams {
		ts := StreamTelemetry{
			Name: s.Name, State: s.State, FPS: s.FPS, Bitrate: s.Bitrate,
			OldestUnackedAge: s.OldestUnackedAge, LiveLag: s.LiveLag,
			FramesDropped: s.FramesDropped, FragmentsLost: s.FragmentsLost, FragmentsSkipped: s.FragmentsSkipped,
		}
		if s.RingBytesCapacity > 0 {
			ts.RingFill = float64(int64(float64(s.RingBytesUsed)/float64(s.RingBytesCapacity)*1000+0.5)) / 1000
		}
		if s.LastError != nil {
			ts.LastError = truncate(s.LastError.Message, maxReasonDescription)
		}
		t.Streams = append(t.Streams, ts)
	}
	return t
}

func (r *Runner) telemetryLoop(ctx context.Context) {
	every := r.o.Config.TelemetryInterval.Std()
	if every <= 0 {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if _, err := r.current(); err != nil {
				continue // offline: the next tick reports the state then
			}
			if err := r.publish(ctx, r.topics.Telemetry(), NewTelemetry(r.o.Daemon.Status(), now), false); err != nil {
				r.log.Debug("mqtt telemetry not published", "err", err)
			}
		}
	}
}
