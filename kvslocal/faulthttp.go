package kvslocal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// FaultHandler serves the server's faults and records over plain HTTP, for
// tests that run the kvslocal command as a separate process (for example
// in another network namespace). It must not be exposed beyond the test:
// it has no authentication. Parameters are query or form values:
//
//	POST /fail?stream=S&code=5000&skip=0     FailFragment
//	POST /poison?stream=S&code=5000&attempts=0  PoisonFragment
//	POST /stallopen?stream=S                 StallOpenAcks
//	POST /drop?stream=S&after=1000           DropConnection
//	POST /stall?stream=S[&for=10s]           StallAcks (until /release without for)
//	POST /release?stream=S                   end a /stall
//	POST /throttle?stream=S&n=3              Throttle
//	POST /slow?stream=S&bps=100000           SlowReader (0 removes)
//	POST /down?mode=unavailable|refused[&for=30s], POST /up
//	POST /expire                             ExpireCredentials
//	POST /clock?offset=-10m                  SetClockOffset
//	GET  /fragments?stream=S                 Fragments as JSON
//	GET  /live?stream=S                      LiveView as JSON
//	GET  /acks?stream=S                      Acks as JSON
func (s *Server) FaultHandler() http.Handler {
	mux := http.NewServeMux()
	var mu sync.Mutex
	releases := map[string]func(){} // open /stall releases, guarded by mu
	lock := func() func() { mu.Lock(); return mu.Unlock }
	post := func(path string, f func(r *http.Request) error) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := f(r); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
	get := func(path string, f func(name string) any) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			name := r.FormValue("stream")
			if s.findStream(name) == nil {
				http.Error(w, fmt.Sprintf("no stream %q", name), http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(f(name))
		})
	}
	num := func(r *http.Request, key string, def int64) (int64, error) {
		v := r.FormValue(key)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parameter %s=%q: want an integer", key, v)
		}
		return n, nil
	}
	dur := func(r *http.Request, key string) (time.Duration, error) {
		v := r.FormValue(key)
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("parameter %s=%q: want a duration such as 10s", key, v)
		}
		return d, nil
	}
	post("/fail", func(r *http.Request) error {
		code, err := num(r, "code", ErrInternal)
		if err != nil {
			return err
		}
		skip, err := num(r, "skip", 0)
		if err != nil {
			return err
		}
		return s.FailFragment(r.FormValue("stream"), int(code), int(skip))
	})
	post("/poison", func(r *http.Request) error {
		code, err := num(r, "code", ErrInternal)
		if err != nil {
			return err
		}
		attempts, err := num(r, "attempts", 0)
		if err != nil {
			return err
		}
		return s.PoisonFragment(r.FormValue("stream"), int(code), int(attempts))
	})
	post("/drop", func(r *http.Request) error {
		after, err := num(r, "after", 0)
		if err != nil {
			return err
		}
		return s.DropConnection(r.FormValue("stream"), after)
	})
	post("/stall", func(r *http.Request) error {
		d, err := dur(r, "for")
		if err != nil {
			return err
		}
		name := r.FormValue("stream")
		if d > 0 {
			return s.StallAcksFor(name, d)
		}
		release, err := s.StallAcks(name)
		if err != nil {
			return err
		}
		defer lock()()
		releases[name] = release
		return nil
	})
	post("/stallopen", func(r *http.Request) error { return s.StallOpenAcks(r.FormValue("stream")) })
	post("/release", func(r *http.Request) error {
		defer lock()()
		name := r.FormValue("stream")
		release := releases[name]
		if release == nil {
			return fmt.Errorf("stream %q has no stall to release", name)
		}
		delete(releases, name)
		release()
		return nil
	})
	post("/throttle", func(r *http.Request) error {
		n, err := num(r, "n", 1)
		if err != nil {
			return err
		}
		return s.Throttle(r.FormValue("stream"), int(n))
	})
	post("/slow", func(r *http.Request) error {
		bps, err := num(r, "bps", 0)
		if err != nil {
			return err
		}
		return s.SlowReader(r.FormValue("stream"), bps)
	})
	post("/down", func(r *http.Request) error {
		d, err := dur(r, "for")
		if err != nil {
			return err
		}
		mode := Unavailable
		switch m := r.FormValue("mode"); m {
		case "", "unavailable":
		case "refused":
			mode = Refused
		default:
			return fmt.Errorf("parameter mode=%q: want unavailable or refused", m)
		}
		s.Down(mode, d)
		return nil
	})
	post("/up", func(*http.Request) error { s.Up(); return nil })
	post("/expire", func(*http.Request) error { s.ExpireCredentials(); return nil })
	post("/clock", func(r *http.Request) error {
		d, err := dur(r, "offset")
		if err != nil {
			return err
		}
		s.SetClockOffset(d)
		return nil
	})
	get("/fragments", func(name string) any { return s.Fragments(name) })
	get("/live", func(name string) any { return s.LiveView(name) })
	get("/acks", func(name string) any { return s.Acks(name) })
	return mux
}
