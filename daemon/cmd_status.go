package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvscamd/kvscamd/daemon/status"
)

const statusAbout = `
Asks the running daemon over its unix socket for the state of every stream:
capture, frame rate and bitrate, ring buffer fill, oldest unacknowledged
fragment, live lag, upload, credentials and clock. -json prints the same
data for scripts; -watch repeats every -interval until interrupted.`

// cmdStatus queries the running daemon.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "[-json] [-watch [-interval D]] [-socket PATH]", statusAbout)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	watch := fs.Bool("watch", false, "print the status again every interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "how often -watch asks")
	socket := socketFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *interval <= 0 {
		return usageErrorf("-interval %v: must be positive", *interval)
	}
	c := status.NewClient(*socket)
	for {
		st, err := c.Status(ctx)
		if err != nil {
			if ctx.Err() != nil && *watch {
				return nil
			}
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			if !*watch {
				enc.SetIndent("", "  ")
			}
			if err := enc.Encode(st); err != nil {
				return err
			}
		} else {
			if *watch {
				fmt.Fprint(stdout, "\033[H\033[2J") // clear the terminal
			}
			writeStatus(stdout, st, time.Now())
		}
		if !*watch {
			return nil
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// writeStatus prints st for a person: a few daemon lines and one aligned
// row per stream, in human units.
func writeStatus(w io.Writer, st status.Status, now time.Time) {
	clock := "synchronised"
	if !st.Clock.Synchronized {
		clock = "NOT synchronised (clock_sync = " + st.Clock.Mode + ")"
	}
	creds := st.Creds.Source + ", " + st.Creds.State
	if !st.Creds.Expires.IsZero() {
		creds += ", expires in " + humanDuration(st.Creds.Expires.Sub(now))
	}
	fmt.Fprintf(w, "kvscamd %s, up %s\n", st.Version, humanDuration(st.Uptime.Std()))
	fmt.Fprintf(w, "clock:        %s\n", clock)
	fmt.Fprintf(w, "credentials:  %s\n", creds)
	fmt.Fprintf(w, "mqtt:         %s\n", st.MQTT.State)
	if st.LastError != nil {
		fmt.Fprintf(w, "last error:   %s (%s)\n", st.LastError.Message, ago(st.LastError.Time, now))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSTATE\tMODE\tFPS\tBITRATE\tFRAMES (DROPPED)\tSTORED\tACKED\tLOST\tRING\tOLDEST UNACKED\tLIVE LAG\tUPLOAD")
	for _, s := range st.Streams {
		state := s.State
		if !s.Capture {
			state = "capture off"
		}
		upload := s.Uploader.State
		if s.Uploader.Alert != "" {
			upload = "ATTENTION: " + s.Uploader.Alert
		}
		oldest := "-"
		if !s.OldestUnacked.IsZero() {
			oldest = ago(s.OldestUnacked, now)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%d (%d)\t%d\t%d\t%d\t%s / %s\t%s\t%s\t%s\n",
			s.Name, state, s.Mode, s.FPS, humanBits(s.Bitrate), s.FramesCaptured, s.FramesDropped,
			s.FragmentsStored, s.FragmentsAcked, s.FragmentsLost,
			humanBytes(s.RingBytesUsed), humanBytes(ringRoom(s)), oldest,
			humanDuration(s.LiveLag.Std()), upload)
	}
	tw.Flush()
	for _, s := range st.Streams {
		if ringRoom(s) < s.RingBytesCapacity {
			fmt.Fprintf(w, "%s: ring_size is %s but the filesystem holds only %s for it; the oldest video goes first\n",
				s.Name, humanBytes(s.RingBytesCapacity), humanBytes(ringRoom(s)))
		}
		if s.LastError != nil {
			fmt.Fprintf(w, "%s: last error %s: %s\n", s.Name, ago(s.LastError.Time, now), s.LastError.Message)
		}
	}
}

// humanBytes writes n in binary units: "1.2 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	s := fmt.Sprintf("%.1f", f)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[i]) + "iB"
}

// humanBits writes a bitrate: "4.1 Mbit/s".
func humanBits(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.0f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}

// humanDuration rounds d to what a person reads at a glance: "45s",
// "3m", "2h5m", "3d4h".
func humanDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		s = fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	if neg {
		return "-" + s
	}
	return s
}

// ago is "3m ago" (or "in 3m" for a time ahead of now).
func ago(t, now time.Time) string {
	if t.After(now) {
		return "in " + humanDuration(t.Sub(now))
	}
	return humanDuration(now.Sub(t)) + " ago"
}

// ringRoom is the ring's effective capacity (older daemons report only
// the configured one).
func ringRoom(s status.Stream) int64 {
	if s.RingBytesEffective > 0 {
		return min(s.RingBytesEffective, s.RingBytesCapacity)
	}
	return s.RingBytesCapacity
}
