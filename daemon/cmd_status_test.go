package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
)

func TestHumanUnits(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 4 << 30: "4 GiB", 1288490188: "1.2 GiB"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{0: "0s", 45 * time.Second: "45s", 3*time.Minute + 5*time.Second: "3m",
		2*time.Hour + 5*time.Minute: "2h5m", 76 * time.Hour: "3d4h", -90 * time.Second: "-1m"} {
		if got := humanDuration(in); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{4.1e6: "4.1 Mbit/s", 256e3: "256 kbit/s", 12: "12 bit/s"} {
		if got := humanBits(in); got != want {
			t.Errorf("humanBits(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteStatus(t *testing.T) {
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	st := status.Status{
		Version: "v1", Uptime: status.Duration(3*time.Hour + 12*time.Minute),
		Clock: status.ClockStatus{Synchronized: false, Mode: "wait"},
		Creds: status.CredsStatus{Source: "iot", State: "ok", Expires: now.Add(47 * time.Minute)},
		MQTT:  status.MQTTStatus{State: "disabled"},
		Streams: []status.Stream{
			{Name: "cam-0001", State: "capturing", Capture: true, Mode: "live", FPS: 30, Bitrate: 4.1e6, FramesCaptured: 345012,
				FragmentsStored: 5750, FragmentsAcked: 5748, RingBytesUsed: 1288490188, RingBytesCapacity: 4 << 30,
				OldestUnacked: now.Add(-4 * time.Second), LiveLag: status.Duration(2 * time.Second),
				Uploader: status.UploaderStatus{State: "streaming"}},
			{Name: "cam-0002", State: "capture off", Mode: "record", RingBytesCapacity: 1 << 30, RingBytesEffective: 30 << 20, Uploader: status.UploaderStatus{Alert: "stream deleted"},
				LastError: &status.ErrorAt{Message: "uploader: 4500", Time: now.Add(-3 * time.Minute)}},
		},
	}
	var b bytes.Buffer
	writeStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"kvscamd v1, up 3h12m", "NOT synchronised (clock_sync = wait)", "iot, ok, expires in 47m",
		"1.2 GiB / 4 GiB", "4s ago", "4.1 Mbit/s", "345012 (0)", "ATTENTION: stream deleted",
		"cam-0002: last error 3m ago: uploader: 4500",
		"0 B / 30 MiB", "cam-0002: ring_size is 1 GiB but the filesystem holds only 30 MiB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	// Columns line up: every stream row starts its STATE column where the
	// header's does.
	lines := strings.Split(out, "\n")
	var header string
	for _, l := range lines {
		if strings.HasPrefix(l, "STREAM") {
			header = l
		}
	}
	col := strings.Index(header, "STATE")
	for _, l := range lines {
		if strings.HasPrefix(l, "cam-") && !strings.Contains(l, "last error") && !strings.Contains(l, "ring_size is") && l[col-2:col] != "  " {
			t.Errorf("row not aligned with the header at column %d:\n%s\n%s", col, header, l)
		}
	}
}
