package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Limits of one connection. AWS IoT Core enforces 100 publishes per
// second and 128 KiB per payload per connection, and drops a client
// that exceeds them; the daemon stays well inside.
const (
	// MaxPublishPerSecond bounds outbound publishes (a token bucket with
	// this many tokens, refilled at this rate).
	MaxPublishPerSecond = 20
	// MaxPayloadBytes is the largest payload the daemon publishes.
	MaxPayloadBytes = 128 << 10
	// MaxFiltersPerSubscribe is AWS IoT's limit per SUBSCRIBE packet.
	MaxFiltersPerSubscribe = 8
	// ALPNProtocol lets MQTT with X.509 through port 443.
	ALPNProtocol = "x-amzn-mqtt-ca"
	// opTimeout bounds one CONNECT, SUBSCRIBE or PUBLISH round trip.
	opTimeout = 20 * time.Second
	// quiesce is how long a clean disconnect waits for in-flight work.
	quiesce = 250 * time.Millisecond
)

// Message is one received publish. Payload belongs to the receiver.
type Message struct {
	Topic   string
	Payload []byte
}

// Route hands the messages of one topic filter to Handle, which runs on
// the connection's network goroutine and so must not block: it queues
// the message for a worker (see queue) and returns.
type Route struct {
	Filter string
	Handle func(Message)
}

// Will is the message the broker publishes, retained, if the connection
// ends without a DISCONNECT.
type Will struct {
	Topic   string
	Payload []byte
}

// ConnOptions describe one connection.
type ConnOptions struct {
	// Endpoint is host:port. Port 443 adds the ALPN protocol AWS IoT
	// needs there.
	Endpoint string
	// ClientID is the thing name: AWS IoT's thing policy variables only
	// resolve when they are equal.
	ClientID string
	// TLS returns the client configuration for one attempt; it is called
	// for every connection so that renewed certificate files are used.
	TLS       func() (*tls.Config, error)
	KeepAlive time.Duration
	Will      *Will
	// Routes are subscribed on connect, before Connect returns.
	Routes []Route
	// OnLost, if set, is called (on paho's goroutine) when the
	// connection drops.
	OnLost func(error)
	Logger *slog.Logger
}

// Conn is one MQTT session with mutual TLS. It does not reconnect:
// Keeper does that for the daemon, while `kvscamd check` and a
// provisioning step use a single Conn. Safe for concurrent use.
type Conn struct {
	c      paho.Client
	log    *slog.Logger
	lim    *limiter
	mu     sync.Mutex
	routes []Route
	lost   chan struct{}
	err    error
}

// Stage says how far a connection attempt got; Error carries it so that
// callers can tell TLS, authentication and policy failures apart.
type Stage string

const (
	StageTLS       Stage = "tls"       // dial or handshake failed
	StageAuth      Stage = "auth"      // the broker refused or hung up on CONNECT
	StagePolicy    Stage = "policy"    // a SUBSCRIBE was refused or dropped the connection
	StageTransport Stage = "transport" // anything else
)

// Error is a connection failure at one Stage.
type Error struct {
	Stage Stage
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("mqtt %s: %v", e.Stage, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// TLSConfig adds what AWS IoT needs to base for endpoint: the SNI host
// name and, on port 443, the ALPN protocol.
func TLSConfig(base *tls.Config, endpoint string) (*tls.Config, error) {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return nil, fmt.Errorf("mqtt: endpoint %q: %w", endpoint, err)
	}
	tc := base.Clone()
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	if port == "443" {
		tc.NextProtos = []string{ALPNProtocol}
	}
	return tc, nil
}

// Connect opens one session, subscribes o.Routes and returns. A failure
// is an *Error naming the stage that failed.
func Connect(ctx context.Context, o ConnOptions) (*Conn, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	base, err := o.TLS()
	if err != nil {
		return nil, &Error{Stage: StageTLS, Err: err}
	}
	tc, err := TLSConfig(base, o.Endpoint)
	if err != nil {
		return nil, &Error{Stage: StageTransport, Err: err}
	}
	// Dial and hand-shake ourselves: paho reports every dial failure the
	// same way, and the operator needs to know it was TLS.
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: opTimeout}, Config: tc}
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	raw, err := d.DialContext(dctx, "tcp", o.Endpoint)
	cancel()
	if err != nil {
		return nil, &Error{Stage: StageTLS, Err: fmt.Errorf("connect %s: %w", o.Endpoint, err)}
	}
	c := &Conn{log: o.Logger, lim: newLimiter(MaxPublishPerSecond), lost: make(chan struct{}), routes: o.Routes}
	used := false
	po := paho.NewClientOptions().
		AddBroker("tcp://" + o.Endpoint).
		SetClientID(o.ClientID).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(o.KeepAlive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(opTimeout).
		SetWriteTimeout(opTimeout).
		SetOrderMatters(true). // handlers only queue, so order is free
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.dispatch(m) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.setLost(err); callLost(o.OnLost, err) }).
		SetCustomOpenConnectionFn(func(_ *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			if used {
				return nil, errors.New("mqtt: connection already used")
			}
			used = true
			return raw, nil
		})
	if o.Will != nil {
		po.SetBinaryWill(o.Will.Topic, o.Will.Payload, 1, true)
	}
	c.c = paho.NewClient(po)
	tok := c.c.Connect()
	if err := wait(ctx, tok); err != nil {
		raw.Close()
		return nil, &Error{Stage: StageAuth, Err: explainConnect(err)}
	}
	if err := c.subscribe(ctx, o.Routes); err != nil {
		c.c.Disconnect(0)
		return nil, err
	}
	return c, nil
}

func callLost(f func(error), err error) {
	if f != nil {
		f(err)
	}
}

func explainConnect(err error) error {
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return fmt.Errorf("%w: the broker does not accept this certificate for this client id (is the certificate registered, active and attached to a policy allowing iot:Connect?)", err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("%w: the client id must be the thing name, at most 128 bytes", err)
	case strings.Contains(err.Error(), "EOF"), strings.Contains(err.Error(), "reset by peer"):
		// AWS IoT hangs up instead of refusing when the policy lacks
		// iot:Connect for this client id.
		return fmt.Errorf("%w: the broker hung up on CONNECT (AWS IoT does this when the policy does not allow iot:Connect for this client id)", err)
	}
	return err
}

// subscribe sends the filters of routes, at most MaxFiltersPerSubscribe
// per packet, and fails if the broker refuses any.
func (c *Conn) subscribe(ctx context.Context, routes []Route) error {
	for i := 0; i < len(routes); i += MaxFiltersPerSubscribe {
		batch := routes[i:min(i+MaxFiltersPerSubscribe, len(routes))]
		filters := make(map[string]byte, len(batch))
		for _, r := range batch {
			filters[r.Filter] = 1
		}
		tok := c.c.SubscribeMultiple(filters, nil)
		if err := wait(ctx, tok); err != nil {
			return &Error{Stage: StagePolicy, Err: fmt.Errorf("subscribe %s: %w (AWS IoT closes the connection when the policy lacks iot:Subscribe for a filter)", filterList(batch), err)}
		}
		for f, code := range tok.(*paho.SubscribeToken).Result() {
			if code >= 0x80 {
				return &Error{Stage: StagePolicy, Err: fmt.Errorf("subscribe %s: refused by the broker; allow iot:Subscribe on topicfilter/%s", f, f)}
			}
		}
	}
	return nil
}

func filterList(rs []Route) string {
	fs := make([]string, len(rs))
	for i, r := range rs {
		fs[i] = r.Filter
	}
	return strings.Join(fs, ", ")
}

// Subscribe adds routes to the session.
func (c *Conn) Subscribe(ctx context.Context, routes ...Route) error {
	c.mu.Lock()
	c.routes = append(c.routes, routes...)
	c.mu.Unlock()
	return c.subscribe(ctx, routes)
}

func (c *Conn) dispatch(m paho.Message) {
	c.mu.Lock()
	routes := c.routes
	c.mu.Unlock()
	msg := Message{Topic: m.Topic(), Payload: m.Payload()}
	for _, r := range routes {
		if TopicMatches(r.Filter, msg.Topic) {
			r.Handle(msg)
			return
		}
	}
	c.log.Debug("mqtt message on a topic nobody handles", "topic", msg.Topic)
}

// Publish sends payload at QoS 1 and waits for the broker's PUBACK, after
// waiting for its turn under MaxPublishPerSecond.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	if len(payload) > MaxPayloadBytes {
		return fmt.Errorf("mqtt: publish %s: payload of %d bytes exceeds the %d-byte limit", topic, len(payload), MaxPayloadBytes)
	}
	if err := c.lim.wait(ctx); err != nil {
		return err
	}
	if err := wait(ctx, c.c.Publish(topic, 1, retained, payload)); err != nil {
		return fmt.Errorf("mqtt: publish %s: %w", topic, err)
	}
	return nil
}

// Request publishes payload on topic and returns the first message that
// arrives on accepted or rejected (subscribed first, so that the answer
// cannot be missed): AWS IoT's request/response pattern, as fleet
// provisioning's create-from-csr and provision topics use it. The
// subscription stays for the session.
func (c *Conn) Request(ctx context.Context, topic string, payload []byte, accepted, rejected string) (reply Message, ok bool, err error) {
	got := make(chan Message, 2)
	offer := func(m Message) {
		select {
		case got <- m:
		default:
		}
	}
	if err := c.Subscribe(ctx, Route{Filter: accepted, Handle: offer}, Route{Filter: rejected, Handle: offer}); err != nil {
		return Message{}, false, err
	}
	if err := c.Publish(ctx, topic, payload, false); err != nil {
		return Message{}, false, err
	}
	select {
	case m := <-got:
		return m, TopicMatches(accepted, m.Topic), nil
	case <-c.lost:
		return Message{}, false, fmt.Errorf("mqtt: request %s: connection lost: %w", topic, c.Err())
	case <-ctx.Done():
		return Message{}, false, fmt.Errorf("mqtt: request %s: no answer: %w", topic, ctx.Err())
	}
}

// Lost is closed when the connection drops (not after Close).
func (c *Conn) Lost() <-chan struct{} { return c.lost }

// Err is why the connection dropped.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) setLost(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		if c.err == nil {
			c.err = errors.New("connection lost")
		}
		close(c.lost)
	}
}

// Close disconnects cleanly: the broker sends no will.
func (c *Conn) Close() {
	c.c.Disconnect(uint(quiesce / time.Millisecond))
}

// wait waits for tok, ctx or opTimeout.
func wait(ctx context.Context, tok paho.Token) error {
	t := time.NewTimer(opTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("no answer from the broker in time")
	}
}

// TopicMatches reports whether topic matches the MQTT filter.
func TopicMatches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

// limiter is a token bucket of n tokens refilled at n per second.
type limiter struct {
	mu     sync.Mutex
	n      float64
	tokens float64
	last   time.Time
}

func newLimiter(n int) *limiter { return &limiter{n: float64(n), tokens: float64(n), last: time.Now()} }

func (l *limiter) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := time.Now()
		l.tokens = min(l.n, l.tokens+now.Sub(l.last).Seconds()*l.n)
		l.last = now
		if l.tokens >= 1 {
			l.tokens--
			l.mu.Unlock()
			return nil
		}
		need := time.Duration((1 - l.tokens) / l.n * float64(time.Second))
		l.mu.Unlock()
		t := time.NewTimer(need)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
