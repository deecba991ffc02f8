package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/credentials/iotlocal"
	"github.com/kvscamd/kvscamd/credentials/testpki"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/daemon/sender"
	"github.com/kvscamd/kvscamd/daemon/service"
	"github.com/kvscamd/kvscamd/daemon/stream"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// The rotation test compresses a device's credential life cycle about
// 450-fold: the IoT endpoint hands out credentials that live 8 s instead
// of an hour, so the daemon's background refresh (at half the lifetime plus
// jitter) runs every 4-5 s and a 30 s upload spans six or more sets.
const (
	rotThing    = "cam-rot"
	rotLifetime = 8 * time.Second
	// rotIoTDelay slows every answer of the IoT endpoint. A request on the
	// upload path that waited for it would take at least this long, which
	// is what the latency assertions below look for.
	rotIoTDelay = time.Second
	// rotMargin is the sender's CredentialMargin scaled like the lifetime
	// (production: 2 min against the credentials cache's window of up to
	// 5 min). It must stay below the cache's window (a tenth of the
	// remaining lifetime, jittered down by up to half, here about
	// 0.3-0.6 s): with a larger margin every connection signed with
	// credentials from the cache would rotate after one fragment.
	rotMargin = 200 * time.Millisecond
	// rotSpan is how much video, by fragment timecodes, must be persisted.
	rotSpan = 30 * time.Second
	// rotMinKeys: refreshes the test must see, in issued credentials and in
	// distinct keys signing PutMedia connections.
	rotMinKeys = 4
	// rotFastRetrieve bounds a Retrieve served from memory; anything that
	// touched the (delayed) IoT endpoint takes rotIoTDelay or more.
	rotFastRetrieve = rotIoTDelay / 2
	rotRingSize     = 64 << 20
)

// TestCredentialRotation runs `kvscamd run` for over 30 s of realtime video
// against the local KVS endpoint, with credentials from a local mutual-TLS
// IoT credentials endpoint that expire every few seconds, and checks that
// rotation costs nothing: every stored fragment is persisted exactly once,
// several keys sign PutMedia connections, no request is refused as expired,
// and the upload never waits for the IoT endpoint. Then it checks that no
// secret reached any log, the state directory or `kvscamd check` output.
func TestCredentialRotation(t *testing.T) {
	clip := testclips.Get("baseline-repeat.h264")
	for _, tool := range []string{"ffmpeg", "ffprobe", "mkvmerge"} {
		mkvcheck.Tool(t, tool)
	}

	// The local KVS endpoint, behind a recorder of who signed what.
	var kvsLog syncBuffer
	kvs := kvslocal.Start(t, kvslocal.Options{
		Logger: slog.New(slog.NewTextHandler(&kvsLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
		// The daemon's stop flushes the open fragment, shorter than the
		// service's 1 s minimum, and uploads it; this test is about
		// credentials, so the endpoint takes it.
		MinFragmentDuration: -1,
	})
	if _, err := kvs.CreateStream(rotThing, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	rec := startSigRecorder(t, kvs)
	var runErr syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kvslocal log:\n%s\nrun stderr:\n%s", kvsLog.String(), runErr.String())
		}
	})

	// The IoT credentials endpoint hands out the KVS endpoint's credentials.
	pki, err := testpki.Generate(t.TempDir(), rotThing)
	if err != nil {
		t.Fatal(err)
	}
	iot, err := iotlocal.Start(iotlocal.Config{
		TLS:      pki.ServerTLS(),
		Lifetime: rotLifetime,
		Issue:    iotlocal.IssueFrom(kvs.IssueCredentials),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer iot.Close()

	state := filepath.Join(t.TempDir(), "state")
	cfgPath := filepath.Join(t.TempDir(), "kvscamd.toml")
	cfgBody := fmt.Sprintf(`thing_name = %q
region = "us-west-2"
state_dir = %q
clock_sync = "trust"
log_level = "debug"

[credentials]
source = "iot"
endpoint = %q
role_alias = %q
cert = %q
key = %q
ca = %q

[kvs]
endpoint = %q
%s`, rotThing, state, iot.Endpoint(), iotlocal.DefaultRoleAlias, pki.Client.Cert, pki.Client.Key, pki.CAFile,
		rec.url, fileStream(rotThing, clip, "64MiB", ""))
	if err := os.WriteFile(cfgPath, []byte(cfgBody), 0o600); err != nil {
		t.Fatal(err)
	}

	// The config file has no key for the sender's credential margin, so
	// the test builds the uploader the way sender.PipelineUploader does,
	// with the margin scaled to the short lifetime and the provider
	// wrapped to time every Retrieve the sender makes.
	timed := &timedCreds{}
	opts := service.Options{
		Socket: filepath.Join(t.TempDir(), "kvscamd.sock"),
		WrapCredentials: func(p credentials.Provider) credentials.Provider {
			timed.setProvider(p)
			return timed
		},
		Stream: stream.Options{TuneSender: func(c *sender.Config) { c.CredentialMargin = rotMargin }},
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() { exit <- report(&runErr, "run", runDaemon(ctx, cfgPath, &runErr, opts)) }()

	// The first fetch happens with the endpoint fast; from then on it is
	// slow, so that any fetch on the upload path would show.
	firstIssued := waitFor(t, 20*time.Second, exit, &runErr, "first credentials issued", func() bool { return iot.Served() >= 1 })
	iot.SetDelay(rotIoTDelay)

	// Upload until rotSpan of video is persisted.
	wctx, wcancel := context.WithTimeout(ctx, rotSpan+25*time.Second)
	err = kvs.Wait(wctx, rotThing, func(st kvslocal.State) bool {
		var first, last int64 = -1, -1
		for _, f := range st.Fragments {
			if !f.Persisted {
				continue
			}
			if first < 0 || f.Timecode < first {
				first = f.Timecode
			}
			last = max(last, f.Timecode)
		}
		return first >= 0 && time.Duration(last-first)*time.Millisecond >= rotSpan
	})
	wcancel()
	if err != nil {
		cancel()
		<-exit
		t.Fatalf("%v of video not persisted in time (%d fragments received, %d credentials issued): %v\nrun stderr:\n%s",
			rotSpan, len(kvs.Fragments(rotThing)), iot.Served(), err, runErr.String())
	}
	cancel()
	select {
	case code := <-exit:
		if code != exitOK {
			t.Fatalf("run exited %d; stderr:\n%s", code, runErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not stop within 30 s; stderr:\n%s", runErr.String())
	}
	stderr := runErr.String()

	// What the ring stored, against what the endpoint persisted.
	rg, err := ring.Open(filepath.Join(state, rotThing), ring.Options{Capacity: rotRingSize, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rg.Close()
	type stored struct {
		id    ring.ID
		f     fragmenter.Fragment
		sha   string
		acked bool
	}
	var ringFrags []stored
	err = rg.Range(time.Time{}, time.Time{}, func(id ring.ID, f fragmenter.Fragment) error {
		sum := sha256.Sum256(f.Cluster)
		ringFrags = append(ringFrags, stored{id, f, hex.EncodeToString(sum[:]), rg.Acked(id)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := rg.Stats(); st.Lost != 0 || st.Expired != 0 || st.CorruptSkipped != 0 || st.EvictedAcked != 0 {
		t.Fatalf("ring dropped fragments: %+v", st)
	}

	got := kvs.Fragments(rotThing)
	byTC := map[int64]kvslocal.Fragment{}
	for _, f := range got {
		if prev, dup := byTC[f.Timecode]; dup {
			t.Errorf("fragment %d received twice: connections %d and %d", f.Timecode, prev.Connection, f.Connection)
		}
		byTC[f.Timecode] = f
		if !f.Persisted {
			t.Errorf("fragment %d (connection %d) received but never persisted", f.Timecode, f.Connection)
		}
	}
	var persistedFrags []fragmenter.Fragment
	frames, unacked := 0, 0
	for i, s := range ringFrags {
		kf, ok := byTC[s.f.Timecode]
		if !ok {
			// Only the very end may still wait in the ring: what the
			// capture side flushed as the daemon stopped. It is kept
			// there, not lost, and the ring must say so.
			if s.acked || i < len(ringFrags)-2 {
				t.Errorf("ring fragment %d (timecode %d, acked %v) of %d never reached the endpoint", s.id, s.f.Timecode, s.acked, len(ringFrags))
			}
			unacked++
			continue
		}
		if !s.acked {
			t.Errorf("ring fragment %d (timecode %d) persisted but not acknowledged in the ring", s.id, s.f.Timecode)
		}
		if kf.Frames != s.f.Frames || kf.SHA256 != s.sha {
			t.Errorf("fragment %d differs: endpoint %d frames sha %s, ring %d frames sha %s", s.f.Timecode, kf.Frames, kf.SHA256, s.f.Frames, s.sha)
		}
		delete(byTC, s.f.Timecode)
		persistedFrags = append(persistedFrags, s.f)
		frames += s.f.Frames
	}
	for tc := range byTC {
		t.Errorf("endpoint holds fragment %d that the ring does not", tc)
	}
	if len(persistedFrags) < int(rotSpan/time.Second) {
		t.Fatalf("only %d fragments persisted", len(persistedFrags))
	}

	// Rotation: credentials issued, keys used, nothing refused.
	issued := iot.Issued()
	reqs := rec.requests()
	conns := 0
	connKey := map[int]string{} // kvslocal connection number -> access key
	usedKeys := map[string]bool{}
	for _, r := range reqs {
		if r.status == http.StatusForbidden || r.status == http.StatusUnauthorized {
			t.Errorf("request %s signed with %s refused with %d", r.path, credentials.RedactAccessKeyID(r.key), r.status)
		}
		if r.path == "/putMedia" && r.status == http.StatusOK {
			conns++
			connKey[conns] = r.key
		}
		usedKeys[r.key] = true
	}
	keysWithVideo := map[string]int{}
	for _, f := range got {
		if k, ok := connKey[f.Connection]; ok && f.Persisted {
			keysWithVideo[k]++
		}
	}
	if conns != kvs.Connections(rotThing) {
		t.Errorf("recorder saw %d accepted PutMedia requests, endpoint %d connections", conns, kvs.Connections(rotThing))
	}
	t.Logf("%d fragments (%d frames) persisted, %d left in the ring; %d credentials issued, %d keys signed requests, %d PutMedia connections, %d keys carried video",
		len(persistedFrags), frames, unacked, len(issued), len(usedKeys), conns, len(keysWithVideo))
	if len(issued) < rotMinKeys+1 || len(usedKeys) < rotMinKeys || len(keysWithVideo) < rotMinKeys {
		t.Errorf("too little rotation: %d credentials issued, %d keys used, %d keys carried persisted video; want more than %d",
			len(issued), len(usedKeys), len(keysWithVideo), rotMinKeys)
	}
	// Each connection ends because its credentials near expiry; one per
	// set of credentials, plus one spare for a stop or a reconnect, is the
	// most a healthy upload needs. Every ERROR ack would be a reconnect.
	if conns > len(issued)+1 {
		t.Errorf("%d PutMedia connections for %d sets of credentials: connections churn", conns, len(issued))
	}
	for _, a := range kvs.Acks(rotThing) {
		if a.EventType == kvslocal.EventError {
			t.Errorf("ERROR ack on connection %d: %d %s", a.Connection, a.ErrorID, a.ErrorCode)
		}
	}
	if strings.Contains(stderr, "credentials expired") {
		t.Errorf("sender saw expired credentials:\n%s", stderr)
	}

	// Never on the critical path: after the first fetch, every Retrieve
	// the sender made (signing PutMedia and control-plane calls) came back
	// from memory, although each fetch from the IoT endpoint took at least
	// rotIoTDelay ...
	calls := timed.snapshot()
	late := 0
	for _, c := range calls {
		if c.start.Before(firstIssued) {
			continue
		}
		late++
		if c.err != nil || c.took >= rotFastRetrieve {
			t.Errorf("Retrieve at %s took %v (err %v): the upload waited for the credentials endpoint", c.start.Format(time.StampMilli), c.took, c.err)
		}
	}
	if late < rotMinKeys {
		t.Errorf("only %d Retrieve calls after the first fetch; the sender did not sign new connections", late)
	}
	// ... and no fragment waited for it either: from the end of its last
	// frame (when the next key frame completes it) to RECEIVED.
	// A sender that fetched when it connects would delay the first
	// fragment of every connection (one in four or five); a single slow
	// disk sync on a loaded machine is forgiven.
	frameDur := time.Second / time.Duration(clip.FPS)
	var worst time.Duration
	var slow []string
	for _, f := range got {
		ready := time.UnixMilli(f.Timecode + f.DurationMs).Add(frameDur)
		if ready.Before(firstIssued.Add(rotIoTDelay)) {
			continue
		}
		lat := f.ReceivedAt.Sub(ready)
		worst = max(worst, lat)
		if lat >= rotIoTDelay {
			slow = append(slow, fmt.Sprintf("fragment %d RECEIVED %v after it was complete (connection %d)", f.Timecode, lat, f.Connection))
		}
	}
	if len(slow) > 1 {
		t.Errorf("fragments waited as long as a credentials fetch:\n%s", strings.Join(slow, "\n"))
	}
	t.Logf("%d Retrieve calls, worst fragment-complete to RECEIVED latency %v", len(calls), worst)

	// The persisted video, as one file and as the endpoint stored one
	// connection, decodes cleanly with exact frame counts.
	all := filepath.Join(t.TempDir(), "persisted.mkv")
	writeFragments(t, all, persistedFrags)
	mkvcheck.Check(t, all, mkvcheck.Expect{Frames: frames, Clusters: len(persistedFrags)})
	perFile := map[string][]kvslocal.Fragment{}
	for _, f := range got {
		perFile[f.File] = append(perFile[f.File], f)
	}
	if len(perFile) < 2 {
		t.Errorf("endpoint stored %d connection files", len(perFile))
	}
	var longest string
	for file, fs := range perFile {
		if longest == "" || len(fs) > len(perFile[longest]) {
			longest = file
		}
	}
	connFrames := 0
	for _, f := range perFile[longest] {
		connFrames += f.Frames
	}
	mkvcheck.Check(t, longest, mkvcheck.Expect{Frames: connFrames, Clusters: len(perFile[longest])})

	// No secret anywhere: the daemon's log, the endpoints' logs, the state
	// directory and `kvscamd check` (which fetches credentials of its own).
	code, checkOut, checkErr := runCLI(t, "check", "-config", cfgPath)
	if code != exitOK || !strings.Contains(checkOut, "credentials: ok") {
		t.Errorf("check: exit %d\n%s%s", code, checkOut, checkErr)
	}
	issued = iot.Issued()
	var stateFiles bytes.Buffer
	err = filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		stateFiles.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stderr) == 0 || kvsLog.String() == "" || !strings.Contains(stderr, "credentials: refreshed") {
		t.Fatalf("logs not captured: run %d bytes, endpoint %d bytes", len(stderr), len(kvsLog.String()))
	}
	texts := map[string]string{
		"run stderr":        stderr,
		"kvslocal log":      kvsLog.String(),
		"check output":      checkOut + checkErr,
		"state directory":   stateFiles.String(),
		"recorded requests": rec.dump(),
	}
	for _, c := range issued {
		for what, secret := range map[string]string{"secret access key": c.SecretAccessKey, "session token": c.SessionToken} {
			if len(secret) < 16 {
				t.Fatalf("%s of %s is only %d characters", what, credentials.RedactAccessKeyID(c.AccessKeyID), len(secret))
			}
			// A prefix catches a secret that was cut short, too.
			needle := secret[:16]
			for where, text := range texts {
				if strings.Contains(text, needle) {
					t.Errorf("%s of %s appears in %s", what, credentials.RedactAccessKeyID(c.AccessKeyID), where)
				}
			}
		}
	}
	if len(issued) < 2 {
		t.Fatalf("only %d credentials to look for", len(issued))
	}
}

// timedCreds records how long each Retrieve of the wrapped provider took.
// It keeps Invalidate, so the sender treats it like the provider itself.
type timedCreds struct {
	mu    sync.Mutex
	prov  credentials.Provider // the daemon's *credentials.Manager
	calls []retrieveCall
}

type retrieveCall struct {
	start time.Time
	took  time.Duration
	err   error
}

func (c *timedCreds) setProvider(p credentials.Provider) {
	c.mu.Lock()
	c.prov = p
	c.mu.Unlock()
}

func (c *timedCreds) provider() credentials.Provider {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prov
}

func (c *timedCreds) Retrieve(ctx context.Context) (credentials.Credentials, error) {
	start := time.Now()
	creds, err := c.provider().Retrieve(ctx)
	took := time.Since(start)
	c.mu.Lock()
	c.calls = append(c.calls, retrieveCall{start, took, err})
	c.mu.Unlock()
	return creds, err
}

func (c *timedCreds) Invalidate() {
	if inv, ok := c.provider().(interface{ Invalidate() }); ok {
		inv.Invalidate()
	}
}

func (c *timedCreds) snapshot() []retrieveCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]retrieveCall(nil), c.calls...)
}

// sigRecorder serves the local KVS endpoint through a handler that notes,
// for every request, the access key it was signed with and the status it
// got. GetDataEndpoint points at it too, so PutMedia passes through it.
type sigRecorder struct {
	url string
	mu  sync.Mutex
	log []*sigRequest
}

type sigRequest struct {
	path   string
	key    string
	status int
}

func startSigRecorder(t *testing.T, kvs *kvslocal.Server) *sigRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &sigRecorder{url: "http://" + ln.Addr().String()}
	// Set before the first request can arrive: every handler goroutine
	// starts after this write.
	kvs.URL, kvs.DataURL = rec.url, rec.url
	hs := &http.Server{Handler: rec.wrap(kvs), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return rec
}

func (rec *sigRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := &sigRequest{path: r.URL.Path, key: signingKey(r.Header.Get("Authorization"))}
		rec.mu.Lock()
		rec.log = append(rec.log, e)
		rec.mu.Unlock()
		h.ServeHTTP(&statusWriter{ResponseWriter: w, rec: rec, e: e}, r)
	})
}

func (rec *sigRecorder) requests() []sigRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]sigRequest, len(rec.log))
	for i, e := range rec.log {
		out[i] = *e
	}
	return out
}

func (rec *sigRecorder) dump() string {
	var b strings.Builder
	for _, r := range rec.requests() {
		fmt.Fprintf(&b, "%s %s %d\n", r.path, r.key, r.status)
	}
	return b.String()
}

// signingKey extracts the access key from a SigV4 Authorization header
// ("AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...").
func signingKey(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// statusWriter notes the response status; Unwrap lets
// http.ResponseController reach the connection (PutMedia needs full
// duplex and flushing).
type statusWriter struct {
	http.ResponseWriter
	rec  *sigRecorder
	e    *sigRequest
	once sync.Once
}

func (w *statusWriter) note(code int) {
	w.once.Do(func() {
		w.rec.mu.Lock()
		w.e.status = code
		w.rec.mu.Unlock()
	})
}

func (w *statusWriter) WriteHeader(code int) {
	w.note(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.note(http.StatusOK) // what net/http sends when Write comes first
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// waitFor polls cond until it holds, failing the test when run exits or
// the deadline passes; it returns when cond first held.
func waitFor(t *testing.T, limit time.Duration, exit chan int, stderr *syncBuffer, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case code := <-exit:
			t.Fatalf("run ended with exit %d before %s; stderr:\n%s", code, what, stderr.String())
		case <-tick.C: // polling a real condition with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; stderr:\n%s", what, limit, stderr.String())
		}
	}
	return time.Now()
}

// writeFragments writes fragments as one Matroska file.
func writeFragments(t *testing.T, path string, frags []fragmenter.Fragment) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	fw := fragmenter.NewFileWriter(f)
	sort.SliceStable(frags, func(i, j int) bool { return frags[i].Timecode < frags[j].Timecode })
	for i := range frags {
		if err := fw.WriteFragment(&frags[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
