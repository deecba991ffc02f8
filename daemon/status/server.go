package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Limits of the socket API.
const (
	// MaxRequestBytes bounds a command's JSON body.
	MaxRequestBytes = 64 << 10
	// requestTimeout bounds one request, so a stuck client cannot hold a
	// connection (and a goroutine) for ever.
	requestTimeout = 30 * time.Second
	// SocketMode lets the owner and the socket's group connect.
	SocketMode = 0o660
)

// Handler is what the server exposes: the service implements it.
type Handler interface {
	Status() Status
	Do(ctx context.Context, c Command) (Result, error)
}

// Server serves Handler on a unix socket. Paths:
//
//	GET  /v1/status    → Status
//	POST /v1/command   Command → Result, or Error with a 4xx/5xx status
type Server struct {
	Path    string // socket path
	Group   string // group to own the socket; "" = SocketGroup; "-" = leave as is
	Handler Handler
	Logger  *slog.Logger
	// Listening, when set, is called once the socket accepts requests.
	Listening func()
}

// Run listens until ctx ends, then closes the listener and removes the
// socket. A stale socket left by a killed daemon is replaced; a live one
// (another daemon answering) is an error.
func (s *Server) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := listen(s.Path)
	if err != nil {
		return err
	}
	if err := s.setOwner(); err != nil {
		ln.Close()
		os.Remove(s.Path)
		return err
	}
	srv := &http.Server{
		Handler:           s.mux(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       requestTimeout,
		WriteTimeout:      requestTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("status socket listening", "path", s.Path)
	if s.Listening != nil {
		s.Listening()
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		os.Remove(s.Path)
		return nil
	case err := <-errc:
		os.Remove(s.Path)
		return fmt.Errorf("status socket %s: %w", s.Path, err)
	}
}

// listen binds the socket with no permissions for others from the first
// instant (umask), replacing a stale socket file.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("status socket %s: another kvscamd is already listening there; stop it or use another -socket", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("status socket %s: a file that is not a socket is in the way; remove it", path)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}

// setOwner gives the socket to the operators' group when that group
// exists; without it only the daemon's own user (and root) can connect.
func (s *Server) setOwner() error {
	if err := os.Chmod(s.Path, SocketMode); err != nil {
		return fmt.Errorf("status socket %s: %w", s.Path, err)
	}
	group := s.Group
	if group == "-" {
		return nil
	}
	if group == "" {
		group = SocketGroup
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return nil // no such group on this machine: owner-only access
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return nil
	}
	if err := os.Chown(s.Path, -1, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("status socket %s: give it to group %s: %w", s.Path, group, err)
	}
	return nil
}

func (s *Server) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := s.Handler.Status()
		st.Goroutines = runtime.NumGoroutine()
		writeJSON(w, http.StatusOK, st)
	})
	m.HandleFunc("POST /v1/command", func(w http.ResponseWriter, r *http.Request) {
		var c Command
		dec := json.NewDecoder(io.LimitReader(r.Body, MaxRequestBytes+1))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			writeError(w, Errorf(CodeBadRequest, "command: %v; send one JSON object like {\"op\":\"status\"}", err))
			return
		}
		res, err := s.Handler.Do(r.Context(), c)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	return m
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInternal, Message: err.Error()}
	}
	code := http.StatusBadRequest
	switch e.Code {
	case CodeUnknownStream:
		code = http.StatusNotFound
	case CodeUnavailable:
		code = http.StatusServiceUnavailable
	case CodeInternal:
		code = http.StatusInternalServerError
	}
	writeJSON(w, code, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
