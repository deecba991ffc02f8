package credentials

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/kvscamd/kvscamd/internal/clock"
)

// DialFunc opens a network connection, like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Option adjusts how providers talk to the network and the clock; tests
// use them, the daemon normally passes only WithLogger.
type Option func(*options)

type options struct {
	log   *slog.Logger
	clock clock.Clock
	dial  DialFunc
}

// WithLogger sets where refreshes and failures are logged. Log records
// never contain secrets. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock replaces the system clock for certificate validity, refresh
// planning, expiry checks (the Cache's too) and the waits between
// retries, so that a test on a clock.Fake moves through hours at once.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithDialer replaces the TCP dialer of the IoT provider, e.g. to reach a
// local server under a real endpoint's host name. SNI and certificate
// verification still use the configured host name.
func WithDialer(d DialFunc) Option { return func(o *options) { o.dial = d } }

func buildOptions(cfg Config, opts []Option) options {
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.clock == nil {
		o.clock = clock.System{}
	}
	if o.dial == nil {
		d := &net.Dialer{Timeout: cfg.withDefaults().ConnectTimeout, KeepAlive: 30 * time.Second}
		o.dial = d.DialContext
	}
	return o
}
