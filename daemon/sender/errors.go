package sender

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Class is what the sender does about a failure.
type Class int

const (
	// ClassRetry: reconnect after a back-off and send the same fragment again.
	ClassRetry Class = iota
	// ClassSkip: the service refused the fragment itself; it is given up
	// (acknowledged in the ring without being stored), logged, and the
	// upload continues with the next one.
	ClassSkip
	// ClassOperator: only a person can fix it (KMS key, deleted stream,
	// bad producer timestamps, permissions). Data is kept, the failure is
	// reported loudly, and retries are spaced by Config.OperatorBackoff.
	ClassOperator
	// ClassThrottle: a quota was hit; back off exponentially.
	ClassThrottle
	// ClassAuth: the credentials expired; refresh them and reconnect at once.
	ClassAuth
	// ClassEndpoint: the data endpoint is wrong; fetch it again.
	ClassEndpoint
	// ClassStream: the stream is missing; describe (and maybe create) it again.
	ClassStream
	// ClassGraceful: the sender ended the connection on purpose.
	ClassGraceful
	// ClassRestart: the fragment is fine but cannot follow the previous
	// one on this connection (4004); a new connection starts with it at
	// once.
	ClassRestart
	// ClassSetAside: the fragment was set aside (see Config.MaxAttempts)
	// and the stream goes on at once without it.
	ClassSetAside
	// ClassClock: the request time was refused (the device clock is off);
	// the offset learnt from the response's Date header is applied and
	// the request repeated at once, then backed off.
	ClassClock
	// ClassDenied: 401/403 other than expiry or clock; credentials are
	// refreshed and the request repeated once, then it needs a person.
	ClassDenied
)

func (c Class) String() string {
	switch c {
	case ClassRetry:
		return "retry"
	case ClassSkip:
		return "skip"
	case ClassOperator:
		return "operator"
	case ClassThrottle:
		return "throttle"
	case ClassAuth:
		return "auth"
	case ClassEndpoint:
		return "endpoint"
	case ClassStream:
		return "stream"
	case ClassGraceful:
		return "graceful"
	case ClassRestart:
		return "restart"
	case ClassSetAside:
		return "set-aside"
	case ClassClock:
		return "clock"
	case ClassDenied:
		return "denied"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// AckErrorClass classifies the ErrorId of an ERROR acknowledgement.
//
//   - 4000 (stream read error), 4003 (connection too long), 5000 (internal),
//     5001 (archival) and any code not listed here: retry the fragment, at
//     most Config.MaxAttempts times (4003 is about the connection and does
//     not count), then set it aside.
//   - 4004 (timecode not after the previous one on this connection): the
//     fragment is valid as the first of a new connection; restart there.
//   - 4007 (producer timestamp in the future): a device clock problem;
//     set the fragment aside (it is retried later) and report.
//   - 4001 (fragment > 50 MB), 4002 (fragment too long), 4005, 4006
//     (invalid MKV), 4009-4012 (metadata/track problems): the fragment can
//     never be accepted; skip it, unless Config.SkipBreaker fragments in
//     a row are refused the same way.
//   - 4008 (stream not active), 4500-4507 (KMS key problems, stream
//     deleted): need a person; keep the data and report.
func AckErrorClass(id int) Class {
	switch {
	case id == 4000, id == 4003, id == 5000, id == 5001:
		return ClassRetry
	case id == 4004:
		return ClassRestart
	case id == 4007:
		return ClassSetAside
	case id == 4008, id >= 4500 && id <= 4507:
		return ClassOperator
	case id == 4001, id == 4002, id == 4005, id == 4006, id >= 4009 && id <= 4012:
		return ClassSkip
	}
	return ClassRetry
}

// ackErrorHint says what an operator should do about an operator-class code.
func ackErrorHint(id int) string {
	switch {
	case id == 4007:
		return "the producer timestamps are invalid: check the device clock (clock_sync) and NTP"
	case id == 4008 || id == 4507:
		return "the stream is not active or was deleted: recreate it (or set kvs.create_stream = true)"
	case id >= 4500 && id <= 4506:
		return "the stream's KMS key cannot be used: check the key's state and that the device role may use it (kms:GenerateDataKey)"
	}
	return ""
}

// failure is why a connection ended.
type failure struct {
	class Class
	err   error
	// offset, for ClassClock, is how far the service's clock is ahead of
	// the device's (from the response's Date header); hasOffset says
	// whether the answer carried one.
	offset    time.Duration
	hasOffset bool
}

func (f *failure) Error() string { return f.class.String() + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(c Class, format string, args ...any) *failure {
	return &failure{class: c, err: fmt.Errorf(format, args...)}
}

func classOf(err error) Class {
	var f *failure
	if errors.As(err, &f) {
		return f.class
	}
	return ClassRetry
}

// isExpiredToken recognises the service's words for expired credentials.
func isExpiredToken(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "expired") && (strings.Contains(s, "token") || strings.Contains(s, "credential"))
}

// isSignatureExpired recognises a refused request time (the device clock
// is off by more than the service's allowed skew).
func isSignatureExpired(s string) bool {
	l := strings.ToLower(s)
	return strings.Contains(l, "signature expired") || strings.Contains(l, "signature not yet current") ||
		strings.Contains(s, "RequestExpired") || strings.Contains(s, "SignatureExpired") || strings.Contains(l, "request has expired")
}

// clockFailure builds a ClassClock failure, learning the offset from the
// answer's Date header when it has one; now is the device clock.
func clockFailure(err error, h http.Header, now time.Time) *failure {
	f := &failure{class: ClassClock, err: fmt.Errorf("%w: the device clock is off; signing with the service's time until NTP fixes it", err)}
	if d := h.Get("Date"); d != "" {
		if t, perr := http.ParseTime(d); perr == nil {
			f.offset, f.hasOffset = t.Sub(now), true
		}
	}
	return f
}

func clockFailureOf(err error) (*failure, bool) {
	var f *failure
	if errors.As(err, &f) && f.class == ClassClock {
		return f, true
	}
	return nil, false
}

// offline reports whether err is a failure to reach the other end at all:
// no route, no address, connection refused, a connect that timed out.
// Nothing was sent, so retrying soon costs no quota.
func offline(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ECONNREFUSED)
}
