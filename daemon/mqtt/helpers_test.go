package mqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/daemon/service"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// waitFor bounds every wait on the broker or the daemon.
const waitFor = 20 * time.Second

const thing = "cam-mqtt"

// cloud plays AWS IoT's side: the commands issuer, the shadow service
// and the jobs service. It records every message on the thing's topics.
type cloud struct {
	t  *testing.T
	c  paho.Client
	mu sync.Mutex
	// msgs is every message received, in order; next counts those a
	// wait already consumed per filter.
	msgs []mqtt.Message
	cond *sync.Cond
	seen map[string]int
}

func newCloud(t *testing.T, b *mosquittotest.Broker, cn string, filters ...string) *cloud {
	t.Helper()
	cl := &cloud{t: t, seen: map[string]int{}}
	cl.cond = sync.NewCond(&cl.mu)
	o := paho.NewClientOptions().AddBroker("tls://" + b.Addr()).SetClientID(cn + "-" + fmt.Sprint(time.Now().UnixNano())).
		SetTLSConfig(b.ClientTLS(cn)).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).SetCleanSession(true)
	o.SetOnConnectHandler(func(c paho.Client) {
		m := map[string]byte{}
		for _, f := range filters {
			m[f] = 1
		}
		c.SubscribeMultiple(m, func(_ paho.Client, msg paho.Message) {
			cl.mu.Lock()
			cl.msgs = append(cl.msgs, mqtt.Message{Topic: msg.Topic(), Payload: append([]byte(nil), msg.Payload()...)})
			cl.cond.Broadcast()
			cl.mu.Unlock()
		}).Wait()
	})
	cl.c = paho.NewClient(o)
	if tok := cl.c.Connect(); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("cloud client: connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.c.Disconnect(0) })
	return cl
}

// await returns the next message on a topic matching filter that match
// accepts, skipping (but not consuming for other filters) any others.
func (cl *cloud) await(filter string, match func(mqtt.Message) bool) mqtt.Message {
	cl.t.Helper()
	deadline := time.Now().Add(waitFor)
	timer := time.AfterFunc(waitFor, func() {
		cl.mu.Lock()
		cl.cond.Broadcast()
		cl.mu.Unlock()
	})
	defer timer.Stop()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for {
		for i := cl.seen[filter]; i < len(cl.msgs); i++ {
			m := cl.msgs[i]
			if mqtt.TopicMatches(filter, m.Topic) {
				cl.seen[filter] = i + 1
				if match == nil || match(m) {
					return m
				}
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, m := range cl.msgs {
				got = append(got, m.Topic+" "+string(m.Payload))
			}
			cl.t.Fatalf("no message on %s within %s; received:\n%s", filter, waitFor, strings.Join(got, "\n"))
		}
		cl.cond.Wait()
	}
}

// count returns how many messages so far arrived on filter.
func (cl *cloud) count(filter string) int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	n := 0
	for _, m := range cl.msgs {
		if mqtt.TopicMatches(filter, m.Topic) {
			n++
		}
	}
	return n
}

func (cl *cloud) publish(topic string, payload any, retained bool) {
	cl.t.Helper()
	var b []byte
	switch p := payload.(type) {
	case string:
		b = []byte(p)
	case []byte:
		b = p
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			cl.t.Fatal(err)
		}
	}
	if tok := cl.c.Publish(topic, 1, retained, b); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		cl.t.Fatalf("cloud publish %s: %v", topic, tok.Error())
	}
}

// gate wraps the real service: it counts Do calls per op and can hold
// one op until released, to play a slow daemon.
type gate struct {
	svc     *service.Service
	mu      sync.Mutex
	calls   map[string]int
	hold    string
	held    chan struct{} // closed when a held op has started
	release chan struct{}
}

func (g *gate) Do(ctx context.Context, c status.Command) (status.Result, error) {
	g.mu.Lock()
	g.calls[c.Op]++
	hold := g.hold == c.Op
	held, release := g.held, g.release
	g.mu.Unlock()
	if hold {
		close(held)
		select {
		case <-release:
		case <-ctx.Done():
			return status.Result{}, ctx.Err()
		}
	}
	return g.svc.Do(ctx, c)
}

func (g *gate) Status() status.Status { return g.svc.Status() }

func (g *gate) calledFor(op string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[op]
}

// holdOp makes the next Do of op wait for the returned release.
func (g *gate) holdOp(op string) (started <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hold, g.held, g.release = op, make(chan struct{}), make(chan struct{})
	rel := g.release
	return g.held, func() { close(rel) }
}

type rig struct {
	t      *testing.T
	broker *mosquittotest.Broker
	cloud  *cloud
	svc    *service.Service
	daemon *gate
	runner *mqtt.Runner
	cancel context.CancelFunc
	done   chan struct{}
	tp     mqtt.Topics
}

type rigOptions struct {
	features  mqtt.Features
	telemetry time.Duration
	// minBackoff and maxBackoff default to 200ms and 1s.
	minBackoff, maxBackoff time.Duration
}

// newRig starts mosquitto, the local KVS endpoint, a real service with
// one file stream "cam" (no MQTT of its own), the cloud side, and a
// runner serving the service.
func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	b := mosquittotest.Start(t)
	r := &rig{t: t, broker: b, tp: mqtt.Topics{Thing: thing}}
	r.cloud = newCloud(t, b, mosquittotest.Cloud, "$aws/#", "kvscamd/#")
	r.svc = startService(t)
	r.daemon = &gate{svc: r.svc, calls: map[string]int{}}
	if o.telemetry == 0 {
		o.telemetry = time.Hour
	}
	if o.minBackoff == 0 {
		o.minBackoff, o.maxBackoff = 200*time.Millisecond, time.Second
	}
	files := b.ClientFiles(thing)
	mc := config.MQTT{
		Enabled: true, Endpoint: b.Addr(), KeepAlive: config.Duration(30 * time.Second),
		TelemetryInterval: config.Duration(o.telemetry),
		Commands:          o.features.Commands, Shadow: o.features.Shadow, Jobs: o.features.Jobs,
		Cert: files.Cert, Key: files.Key, CA: b.CAFile,
	}
	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r.runner = mqtt.New(mqtt.Options{Config: mc, Thing: thing, Version: "test-1", Daemon: r.daemon, Logger: log,
		MinBackoff: o.minBackoff, MaxBackoff: o.maxBackoff})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		if err := r.runner.Run(ctx); err != nil {
			t.Errorf("runner: %v", err)
		}
	}()
	t.Cleanup(r.stop)
	r.waitConnected(1)
	return r
}

func (r *rig) stop() {
	r.cancel()
	<-r.done
}

// waitConnected waits until the runner has connected n times.
func (r *rig) waitConnected(n uint64) {
	r.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		st := r.runner.Stats()
		if st.Connected && st.Connects >= n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("runner not connected %d times within %s: %+v, state %s\nbroker log:\n%s", n, waitFor, st, r.runner.State(), r.broker.Log())
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition with a deadline
	}
}

var execSeq atomic.Int64

// command sends a command request and returns the device's answer.
func (r *rig) command(payload any) mqtt.CommandResponse {
	r.t.Helper()
	id := fmt.Sprintf("exec-%d", execSeq.Add(1))
	return r.commandID(id, payload)
}

func (r *rig) commandID(id string, payload any) mqtt.CommandResponse {
	r.t.Helper()
	r.cloud.publish(fmt.Sprintf("$aws/commands/things/%s/executions/%s/request/json", thing, id), payload, false)
	m := r.cloud.await(r.tp.CommandResponse(id), nil)
	var resp mqtt.CommandResponse
	if err := json.Unmarshal(m.Payload, &resp); err != nil {
		r.t.Fatalf("answer to %s: %v: %s", id, err, m.Payload)
	}
	return resp
}

func (r *rig) stream() status.Stream {
	for _, s := range r.svc.Status().Streams {
		if s.Name == "cam" {
			return s
		}
	}
	r.t.Fatal("no stream cam")
	return status.Stream{}
}

// startService runs a real service with one file stream "cam" uploading
// to a local KVS endpoint.
func startService(t *testing.T) *service.Service {
	t.Helper()
	kvs := kvslocal.Start(t, kvslocal.Options{})
	if _, err := kvs.CreateStream("cam", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	creds := kvs.IssueCredentials(time.Hour)
	clip := testclips.Get("high-aud.h264")
	c := config.Default()
	c.ThingName, c.Region, c.StateDir, c.ClockSync = thing, "eu-west-1", t.TempDir(), config.ClockSyncTrust
	c.Credentials = config.Credentials{Source: config.CredentialsStatic, AccessKeyID: creds.AccessKeyID,
		SecretAccessKey: credentials.Secret(creds.SecretAccessKey), SessionToken: credentials.Secret(creds.SessionToken)}
	c.KVS.Endpoint = kvs.URL
	st := config.DefaultStream()
	st.Name, st.Driver, st.Path, st.Realtime, st.Loop, st.FPS = "cam", config.DriverFile, clip.Path(), true, true, clip.FPS
	st.RingSize = 32 * config.MiB
	c.Streams = []config.Stream{st}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(&c, service.Options{Version: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return svc
}
