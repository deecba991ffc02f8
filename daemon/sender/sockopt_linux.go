package sender

import (
	"net"

	"golang.org/x/sys/unix"
)

// notSentLowat bounds the bytes a PutMedia socket holds that TCP has not
// sent yet (TCP_NOTSENT_LOWAT): a write waits until the kernel has passed
// all but this much to the network. Without it, the send buffer holds
// seconds of video on a slow uplink (1 MiB is half a minute at 300
// kbit/s): live video written after a backlog fragment waits behind it,
// closing a connection on purpose waits for the buffer to drain (and can
// outlast the drain time-out, so fragments are sent twice), and the
// scheduler's idea of "sent" runs far ahead of the link. It does not
// limit the bytes in flight, so throughput on fast links is unchanged.
const notSentLowat = 16 << 10

// limitUnsent applies notSentLowat to c; failure only costs the bound.
func limitUnsent(c *net.TCPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat)
	}); err != nil {
		return err
	}
	return serr
}
