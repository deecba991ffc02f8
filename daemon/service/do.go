package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/daemon/config"
	"github.com/kvscamd/kvscamd/daemon/provision"
	"github.com/kvscamd/kvscamd/daemon/status"
	"github.com/kvscamd/kvscamd/daemon/stream"
)

// Effects of daemon-wide changes.
const (
	EffectDaemonRestart = "needs a daemon restart"
	EffectStreamAdded   = "stream added"
	EffectStreamRemoved = "stream removed"
	EffectRestarted     = "stream restarted"
)

// Do carries out one operator action. A refused command returns a
// *status.Error with a reason code and changes nothing.
func (svc *Service) Do(ctx context.Context, c status.Command) (status.Result, error) {
	switch c.Op {
	case status.OpPing:
		return status.Result{Message: "pong"}, nil
	case status.OpStatus:
		st := svc.Status()
		return status.Result{Message: "ok", Status: &st}, nil
	case status.OpCapture:
		svc.reloadMu.Lock()
		defer svc.reloadMu.Unlock()
		r, err := svc.find(c.Stream)
		if err != nil {
			return status.Result{}, err
		}
		if c.On == nil {
			return status.Result{}, status.Errorf(status.CodeBadArgument, "capture: say on or off (\"on\": true or false)")
		}
		r.s.SetCapture(*c.On)
		return status.Result{Message: fmt.Sprintf("stream %s: capture %s", c.Stream, onOff(*c.On))}, nil
	case status.OpUpload:
		svc.reloadMu.Lock()
		defer svc.reloadMu.Unlock()
		r, err := svc.find(c.Stream)
		if err != nil {
			return status.Result{}, err
		}
		if !c.From.IsZero() && !c.To.IsZero() && !c.To.After(c.From) {
			return status.Result{}, status.Errorf(status.CodeBadArgument, "upload: to (%s) must be after from (%s)",
				c.To.Format(time.RFC3339), c.From.Format(time.RFC3339))
		}
		n, bytes, err := r.s.UploadRange(c.From, c.To)
		if err != nil {
			return status.Result{}, err
		}
		return status.Result{Message: fmt.Sprintf("stream %s: %d fragments queued for upload", c.Stream, n), Fragments: n, Bytes: bytes}, nil
	case status.OpRestart:
		svc.reloadMu.Lock()
		defer svc.reloadMu.Unlock()
		r, err := svc.find(c.Stream)
		if err != nil {
			return status.Result{}, err
		}
		if err := svc.restart(r, r.s.Config()); err != nil {
			return status.Result{}, err
		}
		return status.Result{Message: fmt.Sprintf("stream %s restarted", c.Stream)}, nil
	case status.OpReload:
		return svc.ReloadFile()
	case status.OpSet:
		return svc.set(c.Stream, c.Settings)
	case status.OpRenew:
		return svc.renew(ctx)
	case "":
		return status.Result{}, status.Errorf(status.CodeBadRequest, "command has no op; use one of %s", strings.Join(status.Ops, ", "))
	}
	return status.Result{}, status.Errorf(status.CodeUnknownOp, "unknown op %q; use one of %s", c.Op, strings.Join(status.Ops, ", "))
}

// apply hands st to the running stream: settings it can take live change
// at once, the others restart it with st (reported as EffectRestarted).
// applied is false when the stream refused st and nothing changed; err
// with applied true means the restart failed.
func (svc *Service) apply(r *runner, st config.Stream) (cs []status.Change, applied bool, err error) {
	cs, err = r.s.Apply(st)
	if err != nil {
		return nil, false, err
	}
	restart := false
	for i := range cs {
		if cs[i].Effect == stream.EffectStreamRestart {
			cs[i].Effect = EffectRestarted
			restart = true
		}
	}
	if restart {
		err = svc.restart(r, st)
	}
	return cs, true, err
}

// set changes one stream's settings with the same validation and the same
// live-or-restart sorting as a reload. The configuration in force takes
// the new values, so that a later reload compares the file with what runs.
func (svc *Service) set(name string, s status.Settings) (status.Result, error) {
	svc.reloadMu.Lock()
	defer svc.reloadMu.Unlock()
	r, err := svc.find(name)
	if err != nil {
		return status.Result{}, err
	}
	if s.Empty() {
		return status.Result{}, status.Errorf(status.CodeBadArgument,
			"set: give at least one of mode, upload_rate_limit, keyframe_interval, bitrate, fps, width, height")
	}
	st := r.s.Config()
	if err := ApplySettings(&st, s); err != nil {
		return status.Result{}, err
	}
	cs, applied, err := svc.apply(r, st)
	if !applied {
		return status.Result{}, err
	}
	if err != nil {
		return status.Result{Changes: cs}, status.Errorf(status.CodeInternal, "set: %v", err)
	}
	svc.mu.Lock()
	next := *svc.cfg
	next.Streams = append([]config.Stream(nil), svc.cfg.Streams...)
	for i := range next.Streams {
		if next.Streams[i].Name == name {
			next.Streams[i] = st
		}
	}
	svc.cfg = &next
	svc.mu.Unlock()
	for _, c := range cs {
		svc.log.Info("setting changed", "op", "set", "stream", name, "key", c.Key, "old", c.Old, "new", c.New, "effect", c.Effect)
	}
	res := status.Result{Message: fmt.Sprintf("stream %s: %d settings changed", name, len(cs)), Changes: cs}
	if len(cs) == 0 {
		res.Message = fmt.Sprintf("stream %s: nothing changed", name)
	}
	return res, nil
}

// ApplySettings writes the keys s names into st. A value that does not
// parse is a CodeBadArgument error naming the key; ranges are checked by
// the configuration's own validation when the result is applied.
func ApplySettings(st *config.Stream, s status.Settings) error {
	if s.Mode != "" {
		st.Mode = config.Mode(s.Mode)
	}
	if s.UploadRateLimit != "" {
		r, err := config.ParseRate(s.UploadRateLimit)
		if err != nil {
			return status.Errorf(status.CodeBadArgument, "set: upload_rate_limit: %v; write e.g. \"2MB/s\" or \"0\" for unlimited", err)
		}
		st.UploadRateLimit = r
	}
	if s.KeyframeInterval != "" {
		d, err := config.ParseDuration(s.KeyframeInterval)
		if err != nil {
			return status.Errorf(status.CodeBadArgument, "set: keyframe_interval: %v", err)
		}
		st.KeyframeInterval = d
	}
	for _, f := range []struct {
		v   *int
		dst *int
	}{{s.Bitrate, &st.Bitrate}, {s.FPS, &st.FPS}, {s.Width, &st.Width}, {s.Height, &st.Height}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// ReloadFile reads the configuration file again and applies it (SIGHUP).
func (svc *Service) ReloadFile() (status.Result, error) {
	if svc.opts.ConfigPath == "" {
		return status.Result{}, status.Errorf(status.CodeUnavailable, "reload: this daemon was started without a configuration file")
	}
	cfg, err := config.Load(svc.opts.ConfigPath)
	if err != nil {
		svc.log.Error("new configuration refused; the old one stays in force", "op", "reload", "path", svc.opts.ConfigPath, "err", err)
		return status.Result{}, status.Errorf(status.CodeInvalidConfig, "reload %s: %v; the old configuration stays in force", svc.opts.ConfigPath, err)
	}
	return svc.Reload(cfg)
}

// Reload applies a new configuration stream by stream: what can change
// live does, a stream whose ring must be reopened is restarted, added
// streams start, removed ones stop (their rings stay on disk), and
// daemon-wide keys that only a restart can change are reported as such
// and keep their old values. An invalid configuration is refused whole.
func (svc *Service) Reload(cfg *config.Config) (status.Result, error) {
	if err := cfg.ValidateForRun(); err != nil {
		svc.log.Error("new configuration refused; the old one stays in force", "op", "reload", "err", err)
		return status.Result{}, status.Errorf(status.CodeInvalidConfig, "reload: %v; the old configuration stays in force", err)
	}
	svc.reloadMu.Lock()
	defer svc.reloadMu.Unlock()
	svc.mu.Lock()
	old := svc.cfg
	svc.mu.Unlock()

	var changes []status.Change
	// Daemon-wide keys: only log_level changes live.
	next := *old
	for _, d := range config.DiffDaemon(old, cfg) {
		c := status.Change{Key: d.Key, Old: d.Old, New: d.New, Effect: EffectDaemonRestart}
		if d.Effect == config.EffectLive {
			c.Effect = stream.EffectLive
			if d.Key == "log_level" {
				next.LogLevel = cfg.LogLevel
				if svc.opts.LogLevel != nil {
					svc.opts.LogLevel.Set(cfg.LogLevel.Slog())
				}
			}
		}
		changes = append(changes, c)
	}
	next.Streams = cfg.Streams

	added, removed, changed := config.DiffStreams(old, cfg)
	var errs []string
	for _, name := range removed {
		if r, err := svc.find(name); err == nil {
			svc.stop(r)
			changes = append(changes, status.Change{Stream: name, Key: "stream", Old: name, Effect: EffectStreamRemoved})
		}
	}
	for _, st := range cfg.Streams {
		if _, ok := changed[st.Name]; !ok {
			continue
		}
		r, err := svc.find(st.Name)
		if err != nil {
			continue
		}
		cs, _, err := svc.apply(r, st)
		if err != nil {
			errs = append(errs, err.Error())
		}
		changes = append(changes, cs...)
	}
	for _, name := range added {
		st, _ := findStream(cfg, name)
		s, err := svc.newStream(&next, st)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		r := &runner{s: s}
		svc.mu.Lock()
		svc.streams = append(svc.streams, r)
		if svc.runCtx != nil && svc.runCtx.Err() == nil {
			svc.startLocked(r)
		}
		svc.mu.Unlock()
		changes = append(changes, status.Change{Stream: name, Key: "stream", New: name, Effect: EffectStreamAdded})
	}
	svc.mu.Lock()
	svc.cfg = &next
	svc.loaded = time.Now()
	svc.mu.Unlock()
	for _, c := range changes {
		log := svc.log
		if c.Stream != "" {
			log = log.With("stream", c.Stream)
		}
		log.Info("setting changed", "op", "reload", "key", c.Key, "old", c.Old, "new", c.New, "effect", c.Effect)
	}
	res := status.Result{Message: fmt.Sprintf("configuration reloaded: %d changes", len(changes)), Changes: changes}
	if len(changes) == 0 {
		res.Message = "configuration reloaded: nothing changed"
	}
	svc.log.Info(res.Message, "op", "reload")
	if len(errs) > 0 {
		return res, status.Errorf(status.CodeInternal, "reload applied in part: %s", strings.Join(errs, "; "))
	}
	return res, nil
}

func findStream(c *config.Config, name string) (config.Stream, bool) {
	for _, st := range c.Streams {
		if st.Name == name {
			return st, true
		}
	}
	return config.Stream{}, false
}

// stop ends a removed stream and forgets it. Its ring stays on disk.
func (svc *Service) stop(r *runner) {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.s.Close()
	svc.mu.Lock()
	defer svc.mu.Unlock()
	for i, x := range svc.streams {
		if x == r {
			svc.streams = append(svc.streams[:i], svc.streams[i+1:]...)
			break
		}
	}
}

// renew replaces the fleet-provisioned device certificate now (see
// provision.Renew); the daemon goes on with the old one until its
// clients connect again.
func (svc *Service) renew(ctx context.Context) (status.Result, error) {
	svc.mu.Lock()
	p := svc.cfg.Provisioning
	svc.mu.Unlock()
	if !p.Enabled() {
		return status.Result{}, status.Errorf(status.CodeUnavailable,
			"renew-certificate: this device was not set up by fleet provisioning ([provisioning] has no template); replace its certificate files instead")
	}
	id, err := provision.Renew(ctx, provision.Options{Config: p, Logger: svc.log})
	if err != nil {
		return status.Result{}, status.Errorf(status.CodeInternal, "renew-certificate: %v", err)
	}
	return status.Result{Message: fmt.Sprintf("certificate renewed: thing %s, certificate %s, valid until %s",
		id.ThingName, id.CertificateID, id.NotAfter.Format(time.RFC3339))}, nil
}
