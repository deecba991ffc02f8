// Package sdnotify speaks the service manager's notification protocol:
// datagrams such as "READY=1" or "WATCHDOG=1" sent to the unix socket named
// by $NOTIFY_SOCKET. Outside systemd (no $NOTIFY_SOCKET) every call is a
// cheap no-op, so the daemon runs the same everywhere.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Common states.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// SendTimeout bounds one notification's send.
const SendTimeout = time.Second

// Notifier sends notifications. The zero value (and a Notifier made
// without $NOTIFY_SOCKET) does nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET. An abstract socket is
// written with a leading '@' in the variable and a NUL on the wire.
func FromEnv() *Notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &Notifier{}
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends one or more newline-separated assignments.
func (n *Notifier) Notify(states ...string) error {
	if !n.Enabled() {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	// A service manager that does not read (a test harness, a stopped
	// systemd) fills the socket's queue; a notification is not worth a
	// daemon that hangs, least of all while it stops.
	if err := conn.SetWriteDeadline(time.Now().Add(SendTimeout)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Status formats a STATUS= line; newlines would end the assignment, so
// they become spaces.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// WatchdogInterval returns the watchdog timeout the service manager set for
// this process ($WATCHDOG_USEC, if $WATCHDOG_PID is unset or ours), or
// false when there is none. Pings should come at half of it.
func WatchdogInterval() (time.Duration, bool) {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}
