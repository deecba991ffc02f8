package sender

import (
	"errors"
	"fmt"
	"strings"
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
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// AckErrorClass classifies the ErrorId of an ERROR acknowledgement.
//
//   - 4000 (stream read error), 4003 (connection too long), 5000 (internal),
//     5001 (archival) and any code not listed here: retry the fragment.
//   - 4001 (fragment > 50 MB), 4002 (fragment too long), 4004 (timecode not
//     increasing), 4005, 4006 (invalid MKV), 4009-4012 (metadata/track
//     problems): the fragment can never be accepted; skip it.
//   - 4007 (invalid producer timestamp), 4008 (stream not active),
//     4500-4507 (KMS key problems, stream deleted): need a person; keep
//     the data and report.
func AckErrorClass(id int) Class {
	switch {
	case id == 4000, id == 4003, id == 5000, id == 5001:
		return ClassRetry
	case id == 4007, id == 4008, id >= 4500 && id <= 4507:
		return ClassOperator
	case id == 4001, id == 4002, id >= 4004 && id <= 4006, id >= 4009 && id <= 4012:
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
