package mqtt

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/kvscamd/kvscamd/credentials/certs"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/internal/backoff"
	waitclock "github.com/kvscamd/kvscamd/internal/clock"
)

// Reconnect and queue limits.
const (
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait before a
	// reconnect; AWS IoT allows one CONNECT per second per client id.
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 2 * time.Minute
	// healthyAfter is how long a connection must last before the
	// back-off starts over, so that a connection the broker drops at once
	// (a policy refusing a subscription) is not retried every second.
	healthyAfter = time.Minute
	// queueDepth bounds each feature's backlog; beyond it messages are
	// dropped (and the cloud retries or times out) rather than blocking
	// the network loop.
	queueDepth = 32
	// stopTimeout bounds the offline publish and disconnect at stop.
	stopTimeout = 3 * time.Second
	// maxDelays is how many reconnect waits Stats keeps.
	maxDelays = 16
)

// Daemon is what the runner manages: the service implements it.
type Daemon interface {
	Do(ctx context.Context, c status.Command) (status.Result, error)
	Status() status.Status
}

// Options configure a Runner.
type Options struct {
	Config  config.MQTT
	Thing   string
	Version string
	Daemon  Daemon
	Logger  *slog.Logger
	// TLS, if set, replaces loading Config's cert, key and CA files.
	TLS func() (*tls.Config, error)
	// MinBackoff and MaxBackoff default to DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Stats describe the runner's connection history.
type Stats struct {
	Connected bool
	Connects  uint64
	// Delays are the last reconnect waits drawn, oldest first.
	Delays []time.Duration
}

// Runner keeps the daemon's MQTT session up and serves it.
type Runner struct {
	o      Options
	log    *slog.Logger
	topics Topics
	feat   Features

	cmds    *commands
	shadow  *shadow
	jobs    *jobs
	workers []interface{ run(context.Context) }

	mu    sync.Mutex
	conn  *Conn
	state string
	stats Stats
}

// New returns a runner; nothing connects until Run.
func New(o Options) *Runner {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.TLS == nil {
		o.TLS = FileTLS(o.Config)
	}
	r := &Runner{
		o: o, log: o.Logger.With("component", "mqtt"), topics: Topics{Thing: o.Thing},
		feat:  Features{Commands: o.Config.Commands, Shadow: o.Config.Shadow, Jobs: o.Config.Jobs},
		state: "starting",
	}
	if r.feat.Commands {
		r.cmds = newCommands(r)
		r.workers = append(r.workers, r.cmds)
	}
	if r.feat.Shadow {
		r.shadow = newShadow(r)
		r.workers = append(r.workers, r.shadow)
	}
	if r.feat.Jobs {
		r.jobs = newJobs(r)
		r.workers = append(r.workers, r.jobs)
	}
	return r
}

// FileTLS loads the client certificate, key and CA of m for each
// connection attempt, so that renewed files are picked up.
func FileTLS(m config.MQTT) func() (*tls.Config, error) {
	return func() (*tls.Config, error) {
		host, _, err := net.SplitHostPort(m.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("mqtt: endpoint %q: %w", m.Endpoint, err)
		}
		return certs.ClientTLSConfig(certs.Files{Cert: m.Cert, Key: m.Key, CA: m.CA}, host, time.Now())
	}
}

// State is one line for `kvscamd status`.
func (r *Runner) State() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Stats returns a snapshot of the connection history.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Delays = append([]time.Duration(nil), s.Delays...)
	return s
}

func (r *Runner) setState(format string, args ...any) {
	r.mu.Lock()
	r.state = fmt.Sprintf(format, args...)
	r.mu.Unlock()
}

// current returns the connection in use, or an error while there is none.
func (r *Runner) current() (*Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		return nil, errors.New("mqtt: not connected")
	}
	return r.conn, nil
}

// publish sends on the current connection; while there is none the
// message is dropped (the cloud side retries or times out).
func (r *Runner) publish(ctx context.Context, topic string, v any, retained bool) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("mqtt: encode for %s: %w", topic, err)
	}
	c, err := r.current()
	if err != nil {
		return err
	}
	return c.Publish(ctx, topic, payload, retained)
}

func (r *Runner) routes() []Route {
	var rs []Route
	if r.cmds != nil {
		rs = append(rs, Route{Filter: r.topics.CommandRequests(), Handle: r.cmds.q.offer})
	}
	if r.shadow != nil {
		for _, f := range r.topics.subscriptions(Features{Shadow: true}) {
			rs = append(rs, Route{Filter: f, Handle: r.shadow.q.offer})
		}
	}
	if r.jobs != nil {
		for _, f := range r.topics.subscriptions(Features{Jobs: true}) {
			rs = append(rs, Route{Filter: f, Handle: r.jobs.q.offer})
		}
	}
	return rs
}

// Presence is the retained message on the presence topic.
type Presence struct {
	Online  bool     `json:"online"`
	Version string   `json:"version,omitempty"`
	Streams []string `json:"streams,omitempty"`
}

// Run connects and serves until ctx ends; then it publishes the offline
// presence itself (a clean disconnect sends no will) and disconnects.
// The daemon goes on capturing whatever happens here, so Run only
// returns nil.
func (r *Runner) Run(ctx context.Context) error {
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(wctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.telemetryLoop(wctx)
	}()
	defer func() {
		stopWorkers()
		wg.Wait()
	}()

	bo := &backoff.Backoff{Min: r.o.MinBackoff, Max: r.o.MaxBackoff, Jitter: backoff.Equal}
	will, _ := json.Marshal(Presence{Online: false})
	for {
		r.setState("connecting to %s", r.o.Config.Endpoint)
		conn, err := Connect(ctx, ConnOptions{
			Endpoint: r.o.Config.Endpoint, ClientID: r.o.Thing, TLS: r.o.TLS,
			KeepAlive: r.o.Config.KeepAlive.Std(), Will: &Will{Topic: r.topics.Presence(), Payload: will},
			Routes: r.routes(), Logger: r.log,
		})
		if ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return nil
		}
		var up time.Time
		if err == nil {
			up = time.Now()
			r.online(ctx, conn)
			select {
			case <-conn.Lost():
				err = conn.Err()
			case <-ctx.Done():
				stopWorkers()
				wg.Wait()
				r.offline(conn)
				return nil
			}
			r.mu.Lock()
			r.conn, r.stats.Connected = nil, false
			r.mu.Unlock()
			if time.Since(up) >= healthyAfter {
				bo.Reset()
			}
		}
		d := bo.Next()
		r.mu.Lock()
		r.stats.Delays = append(r.stats.Delays, d)
		if len(r.stats.Delays) > maxDelays {
			r.stats.Delays = r.stats.Delays[1:]
		}
		r.mu.Unlock()
		r.setState("disconnected (%v); reconnecting in %s", err, d.Round(time.Millisecond))
		r.log.Warn("mqtt connection failed; capture and upload go on", "endpoint", r.o.Config.Endpoint, "err", err, "retry_in", d)
		if waitclock.Sleep(ctx, waitclock.System{}, d) != nil {
			return nil
		}
	}
}

// online makes conn current, announces presence and tells the features.
func (r *Runner) online(ctx context.Context, conn *Conn) {
	r.mu.Lock()
	r.conn = conn
	r.stats.Connected = true
	r.stats.Connects++
	r.mu.Unlock()
	r.setState("connected to %s as %s", r.o.Config.Endpoint, r.o.Thing)
	r.log.Info("mqtt connected", "endpoint", r.o.Config.Endpoint, "client_id", r.o.Thing)
	var names []string
	for _, s := range r.o.Daemon.Status().Streams {
		names = append(names, s.Name)
	}
	if err := r.publish(ctx, r.topics.Presence(), Presence{Online: true, Version: r.o.Version, Streams: names}, true); err != nil {
		r.log.Warn("mqtt presence not published", "err", err)
	}
	connected := Message{} // the empty topic tells a worker "(re)connected"
	if r.shadow != nil {
		r.shadow.q.offer(connected)
	}
	if r.jobs != nil {
		r.jobs.q.offer(connected)
	}
}

func (r *Runner) offline(conn *Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := r.publish(ctx, r.topics.Presence(), Presence{Online: false}, true); err != nil {
		r.log.Warn("mqtt offline presence not published; the broker's will says it instead", "err", err)
	}
	r.mu.Lock()
	r.conn, r.stats.Connected = nil, false
	r.mu.Unlock()
	conn.Close()
	r.setState("stopped")
}

// queue is a feature's inbox: offer never blocks.
type queue struct {
	name string
	log  *slog.Logger
	c    chan Message
}

func newQueue(name string, log *slog.Logger) queue {
	return queue{name: name, log: log, c: make(chan Message, queueDepth)}
}

func (q queue) offer(m Message) {
	select {
	case q.c <- m:
	default:
		q.log.Warn("mqtt message dropped: the worker is behind", "worker", q.name, "topic", m.Topic)
	}
}
