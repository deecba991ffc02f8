package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kvscamd/kvscamd/credentials/iotlocal"
	"github.com/kvscamd/kvscamd/credentials/testpki"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// thing is the IoT thing (and certificate common name) every daemon of a
// run signs in as.
const thing = "bench-cam"

// Limits of the rig.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
	// ringSlack is room on a loop device beyond the rings: the
	// filesystem's own metadata and journal.
	ringSlack = 256 << 20
)

// rig is the daemon's world: the local KVS endpoint over https and the
// local IoT credentials endpoint over mutual TLS, both in this process.
type rig struct {
	work  string
	kvs   *kvslocal.Server
	iot   *iotlocal.Server
	pki   *testpki.Set
	caPEM string // the KVS endpoint's certificate, for SSL_CERT_FILE
}

// rigOptions select how strict the endpoint is.
type rigOptions struct {
	// Unthrottled lifts kvslocal's quotas and its future-timestamp check,
	// for replays faster than real time.
	Unthrottled bool
	// CredLifetime of the IoT credentials.
	CredLifetime time.Duration
}

func newRig(work string, o rigOptions) (*rig, error) {
	r := &rig{work: work}
	ko := kvslocal.Options{
		TLS:    true,
		Logger: slog.New(slog.DiscardHandler),
	}
	if o.Unthrottled {
		ko.MaxFutureTimestamp = -1
		ko.MaxFragmentsPerSecond = -1
		ko.MaxBytesPerSecond = -1
		ko.PutMediaCallsPerSecond = -1
		ko.ControlCallsPerSecond = -1
	}
	r.kvs = kvslocal.New(ko)
	if err := r.kvs.Start(); err != nil {
		return nil, err
	}
	r.caPEM = filepath.Join(work, "kvs-ca.pem")
	if err := os.WriteFile(r.caPEM, r.kvs.CACertPEM(), 0o644); err != nil {
		r.Close()
		return nil, err
	}
	pkiDir := filepath.Join(work, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		r.Close()
		return nil, err
	}
	pki, err := testpki.Generate(pkiDir, thing)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.pki = pki
	r.iot, err = iotlocal.Start(iotlocal.Config{
		TLS:      pki.ServerTLS(),
		Lifetime: o.CredLifetime,
		Issue:    iotlocal.IssueFrom(r.kvs.IssueCredentials),
	})
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *rig) Close() {
	if r.iot != nil {
		r.iot.Close()
	}
	if r.kvs != nil {
		r.kvs.Close()
	}
}

// daemonSpec says how to run one daemon.
type daemonSpec struct {
	Name     string   // variant name, prefixes stream names
	Env      []string // extra environment, e.g. GOGC=50
	Streams  int
	RingSize int64
	Realtime bool
	LoopDev  bool
	NoAtime  bool   // mount the loop device with noatime
	CPUProf  string // file for the CPU profile; "" for none
	MemProf  string // file for the allocation profile; "" for none
}

// daemon is one running kvscamd.
type daemon struct {
	spec    daemonSpec
	dir     string
	state   string
	socket  string
	streams []string
	loop    *loopDev
	// sectors0 is the loop device's sectors written before the daemon.
	sectors0 int64
	cmd      *exec.Cmd
	exited   chan error
	logPath  string
	notify   *net.UnixConn
	started  time.Time
	ready    time.Duration
	client   *status.Client
}

// startDaemon writes the configuration, starts the binary with a fake
// NOTIFY_SOCKET and waits for READY=1.
func (r *rig) startDaemon(ctx context.Context, bin, clip, logDir string, spec daemonSpec) (*daemon, error) {
	d := &daemon{spec: spec, dir: filepath.Join(r.work, spec.Name), exited: make(chan error, 1)}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, err
	}
	d.state = filepath.Join(d.dir, "state")
	if spec.LoopDev {
		l, err := newLoopDev(d.dir, int64(spec.Streams)*spec.RingSize+ringSlack, spec.NoAtime)
		if err != nil {
			return nil, err
		}
		d.loop = l
		// Counting starts after mkfs and mount: the ring's creation is
		// the daemon's cost, the filesystem's is not.
		if d.sectors0, err = l.Sectors(); err != nil {
			d.cleanup()
			return nil, err
		}
		d.state = filepath.Join(l.Dir, "state")
	}
	d.socket = filepath.Join(d.dir, "kvscamd.sock")
	d.client = status.NewClient(d.socket)
	var b strings.Builder
	fmt.Fprintf(&b, `thing_name = %q
region = "us-west-2"
state_dir = %q
log_level = "info"
clock_sync = "trust"

[credentials]
source = "iot"
endpoint = %q
role_alias = %q
cert = %q
key = %q
ca = %q

[kvs]
endpoint = %q
`, thing, d.state, r.iot.Endpoint(), iotlocal.DefaultRoleAlias, r.pki.Client.Cert, r.pki.Client.Key, r.pki.CAFile, r.kvs.URL)
	for i := range spec.Streams {
		name := fmt.Sprintf("%s-cam%d", spec.Name, i+1)
		d.streams = append(d.streams, name)
		if _, err := r.kvs.CreateStream(name, 24*time.Hour); err != nil {
			d.cleanup()
			return nil, err
		}
		fmt.Fprintf(&b, `
[[stream]]
name = %q
driver = "file"
path = %q
loop = true
realtime = %v
fps = %d
ring_size = "%dMiB"
`, name, clip, spec.Realtime, clipFPS, spec.RingSize>>20)
	}
	cfg := filepath.Join(d.dir, "kvscamd.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		d.cleanup()
		return nil, err
	}

	notifyPath := filepath.Join(d.dir, "notify.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		d.cleanup()
		return nil, err
	}
	d.notify = nc
	// The log goes next to the report, so that it outlives the work dir.
	d.logPath = filepath.Join(logDir, spec.Name+".log")
	logf, err := os.Create(d.logPath)
	if err != nil {
		d.cleanup()
		return nil, err
	}
	d.cmd = exec.Command(bin, "run", "-config", cfg, "-socket", d.socket)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "SSL_CERT_FILE="+r.caPEM)
	if spec.CPUProf != "" {
		d.cmd.Env = append(d.cmd.Env, "KVSCAMD_CPUPROFILE="+spec.CPUProf)
	}
	if spec.MemProf != "" {
		d.cmd.Env = append(d.cmd.Env, "KVSCAMD_MEMPROFILE="+spec.MemProf)
	}
	d.cmd.Env = append(d.cmd.Env, spec.Env...)
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		d.cleanup()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { d.exited <- d.cmd.Wait(); logf.Close() }()
	if err := d.waitReady(); err != nil {
		d.kill()
		d.cleanup()
		return nil, err
	}
	return d, nil
}

// waitReady reads notifications until READY=1; the time from exec to it
// is what systemd waits before it calls the unit started.
func (d *daemon) waitReady() error {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		_ = d.notify.SetReadDeadline(time.Now().Add(time.Second))
		n, err := d.notify.Read(buf)
		select {
		case err := <-d.exited:
			d.exited <- err
			return fmt.Errorf("daemon %s exited before READY: %v (log: %s)", d.spec.Name, err, d.logPath)
		default:
		}
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				d.ready = time.Since(d.started)
				// Keep reading and dropping STATUS and WATCHDOG lines, so
				// the daemon's sends never find the socket full.
				go d.drainNotify()
				return nil
			}
		}
	}
	return fmt.Errorf("daemon %s sent no READY=1 within %v (log: %s)", d.spec.Name, readyTimeout, d.logPath)
}

func (d *daemon) drainNotify() {
	buf := make([]byte, 4096)
	_ = d.notify.SetReadDeadline(time.Time{})
	for {
		if _, err := d.notify.Read(buf); err != nil {
			return
		}
	}
}

// alive reports an early exit.
func (d *daemon) alive() error {
	select {
	case err := <-d.exited:
		d.exited <- err
		return fmt.Errorf("daemon %s exited: %v (log: %s)", d.spec.Name, err, d.logPath)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits; the rusage of the whole life comes back.
func (d *daemon) stop() (*syscall.Rusage, error) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.exited <- err
		var ru *syscall.Rusage
		if d.cmd.ProcessState != nil {
			ru, _ = d.cmd.ProcessState.SysUsage().(*syscall.Rusage)
		}
		if err != nil {
			return ru, fmt.Errorf("daemon %s did not stop cleanly: %v (log: %s)", d.spec.Name, err, d.logPath)
		}
		return ru, nil
	case <-time.After(stopTimeout):
		d.kill()
		return nil, fmt.Errorf("daemon %s did not stop within %v of SIGTERM (log: %s)", d.spec.Name, stopTimeout, d.logPath)
	}
}

func (d *daemon) kill() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.exited <- errors.New("killed")
	}
}

func (d *daemon) cleanup() {
	if d.notify != nil {
		d.notify.Close()
	}
	if d.loop != nil {
		d.loop.Close()
	}
}

// daemonStatus is what one sample takes from the status socket.
type daemonStatus struct {
	Goroutines    int
	Frames        uint64
	Stored, Acked uint64
	Lost          uint64
	Unacked       int
	RingUsed      int64
	RingCap       int64
	BytesSent     uint64
	Connections   uint64
	CaptureOn     int
	// CaptureOff counts streams whose capture has stopped: the last
	// fragment is flushed, the source is down.
	CaptureOff int
}

func (d *daemon) status(ctx context.Context) (daemonStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := d.client.Status(ctx)
	if err != nil {
		return daemonStatus{}, err
	}
	ds := daemonStatus{Goroutines: st.Goroutines}
	for _, s := range st.Streams {
		ds.Frames += s.FramesCaptured
		ds.Stored += s.FragmentsStored
		ds.Acked += s.FragmentsAcked
		ds.Lost += s.FragmentsLost
		ds.Unacked += s.FragmentsUnacked
		ds.RingUsed += s.RingBytesUsed
		ds.RingCap += s.RingBytesCapacity
		ds.BytesSent += s.Uploader.BytesSent
		ds.Connections += s.Uploader.Connections
		if s.Capture {
			ds.CaptureOn++
		}
		if s.State == "capture off" {
			ds.CaptureOff++
		}
	}
	return ds, nil
}

// setCapture turns capture of every stream on or off over the socket, as
// `kvscamd capture` does.
func (d *daemon) setCapture(ctx context.Context, on bool) error {
	for _, s := range d.streams {
		if _, err := d.client.Do(ctx, status.Command{Op: status.OpCapture, Stream: s, On: &on}); err != nil {
			return fmt.Errorf("capture %s %v: %w", s, on, err)
		}
	}
	return nil
}
