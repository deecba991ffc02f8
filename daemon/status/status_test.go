package status

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeHandler answers with fixed values and records commands.
type fakeHandler struct {
	cmds chan Command
}

func (h *fakeHandler) Status() Status {
	return Status{Version: "v-test", Streams: []Stream{{Name: "cam-1", OldestUnackedAge: Duration(1500 * time.Millisecond)}}}
}

func (h *fakeHandler) Do(_ context.Context, c Command) (Result, error) {
	h.cmds <- c
	switch c.Op {
	case OpPing:
		return Result{Message: "pong"}, nil
	case OpUpload:
		return Result{}, Errorf(CodeUnknownStream, "no stream %q", c.Stream)
	}
	return Result{}, errors.New("boom")
}

// serve runs a Server on a socket in a temporary directory until the test
// ends.
func serve(t *testing.T, path string) *fakeHandler {
	t.Helper()
	h := &fakeHandler{cmds: make(chan Command, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &Server{Path: path, Group: "-", Handler: h}
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return h
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not listen")
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition with a deadline
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	h := serve(t, path)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket mode %v (%v), want %o", fi.Mode().Perm(), err, SocketMode)
	}
	c := NewClient(path)
	st, err := c.Status(context.Background())
	if err != nil || st.Version != "v-test" || len(st.Streams) != 1 || st.Streams[0].OldestUnackedAge.Std() != 1500*time.Millisecond {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	on := true
	res, err := c.Do(context.Background(), Command{Op: OpPing, Stream: "cam-1", On: &on})
	if err != nil || res.Message != "pong" {
		t.Fatalf("ping = %+v, %v", res, err)
	}
	if got := <-h.cmds; got.Op != OpPing || got.Stream != "cam-1" || got.On == nil || !*got.On {
		t.Fatalf("server got %+v", got)
	}
	// A refusal keeps its reason code across the socket.
	_, err = c.Do(context.Background(), Command{Op: OpUpload, Stream: "nope"})
	if CodeOf(err) != CodeUnknownStream || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("refusal = %v (code %s)", err, CodeOf(err))
	}
	<-h.cmds
	_, err = c.Do(context.Background(), Command{Op: "explode"})
	if CodeOf(err) != CodeInternal || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("internal error = %v", err)
	}
	<-h.cmds
}

func TestBadRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	serve(t, path)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	for _, body := range []string{"not json", `{"op":"ping","bogus":1}`, `{"op":"ping"` + strings.Repeat(" ", MaxRequestBytes) + `}`} {
		resp, err := hc.Post("http://kvscamd/v1/command", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var e Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Code != CodeBadRequest {
			t.Errorf("body %.20q: %d %+v", body, resp.StatusCode, e)
		}
	}
}

// A socket left by a killed daemon is replaced; a live one is refused;
// a file that is not a socket is left alone.
func TestSocketTakeover(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody answers
	serve(t, stale)

	if _, err := listen(stale); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listen(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen over a regular file: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("the regular file was removed")
	}
}

func TestClientExplains(t *testing.T) {
	_, err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "kvscamd is not running") {
		t.Fatalf("missing socket: %v", err)
	}
	// Root opens any socket, so the permission case is checked on the
	// error the dialer returns for a user outside the group.
	denied := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	err = NewClient("/run/kvscamd/kvscamd.sock").explain(denied)
	if !strings.Contains(err.Error(), "join the "+SocketGroup+" group") || !strings.Contains(err.Error(), "/run/kvscamd/kvscamd.sock") {
		t.Fatalf("permission denied: %v", err)
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Duration(2500 * time.Millisecond))
	if err != nil || string(b) != "2.500" {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var d Duration
	if err := json.Unmarshal([]byte("90"), &d); err != nil || d.Std() != 90*time.Second {
		t.Fatalf("unmarshal: %v %v", d, err)
	}
	if err := json.Unmarshal([]byte(`"x"`), &d); err == nil {
		t.Fatal("a string accepted as seconds")
	}
}
