// Package ack decodes the acknowledgement stream that Kinesis Video Streams
// sends back on a PutMedia connection.
//
// The 200 response body of PutMedia is a sequence of flat JSON objects, one
// per event, usually but not always separated by newlines: proxies may bunch
// several together or split one across reads. Decoder therefore treats the
// body as a JSON value stream and never relies on line breaks. Memory is
// bounded: an object larger than MaxEventSize is refused instead of being
// buffered.
package ack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Type is the EventType of an acknowledgement.
type Type string

// The event types KVS sends.
const (
	// Buffering: the first byte of the fragment arrived.
	Buffering Type = "BUFFERING"
	// Received: the whole fragment arrived. With no retention this is the
	// last word on the fragment.
	Received Type = "RECEIVED"
	// Persisted: the fragment is durably stored (only with retention > 0).
	Persisted Type = "PERSISTED"
	// Error: the fragment or the connection failed; see ErrorID. The
	// service closes the connection after every error.
	Error Type = "ERROR"
	// Idle: the connection is open but no media arrived recently.
	Idle Type = "IDLE"
)

// Known reports whether t is one of the documented event types. Unknown
// types are decoded, not refused, so that a new event kind cannot break
// uploads; callers ignore what they do not know.
func (t Type) Known() bool {
	switch t {
	case Buffering, Received, Persisted, Error, Idle:
		return true
	}
	return false
}

// Limits of the decoder.
const (
	// MaxEventSize bounds one JSON object (and the whitespace before it).
	// Real acknowledgements are about 150 bytes; the official producer
	// library accepts up to 1 KiB. The margin allows for error messages.
	MaxEventSize = 8 << 10
	// MaxFragmentNumberLen is the documented maximum length of a
	// fragment number (digits).
	MaxFragmentNumberLen = 128
)

// Event is one acknowledgement.
type Event struct {
	Type Type
	// Timecode echoes the fragment's cluster timecode (epoch ms with
	// ABSOLUTE timecodes). HasTimecode is false when the field was absent
	// (IDLE events); the service sends -1 for fragments it could not parse.
	Timecode    int64
	HasTimecode bool
	// FragmentNumber is the service's id for the fragment: up to 128
	// digits, far beyond any integer type, so it stays a string.
	FragmentNumber string
	// ErrorID and ErrorCode are set on ERROR events (e.g. 4002,
	// "MAX_FRAGMENT_DURATION_REACHED").
	ErrorID   int
	ErrorCode string
}

func (e Event) String() string {
	s := string(e.Type)
	if e.HasTimecode {
		s += " " + strconv.FormatInt(e.Timecode, 10)
	}
	if e.Type == Error || e.ErrorID != 0 {
		s += fmt.Sprintf(" %d %s", e.ErrorID, e.ErrorCode)
	}
	return s
}

// ErrMalformed is wrapped by every error about bytes that are not a valid
// acknowledgement stream.
var ErrMalformed = errors.New("ack: malformed acknowledgement stream")

// ServiceMessageError is a JSON object with a "message" and no EventType:
// the service reports request-level failures this way, for example
// {"message":"The security token included in the request is expired"}.
type ServiceMessageError struct {
	Message string
}

func (e *ServiceMessageError) Error() string {
	return "ack: service message instead of acknowledgement: " + e.Message
}

// wire is the JSON shape. encoding/json matches keys case-insensitively,
// which also covers "message" versus "Message".
type wire struct {
	EventType        *string         `json:"EventType"`
	FragmentTimecode *int64          `json:"FragmentTimecode"`
	FragmentNumber   json.RawMessage `json:"FragmentNumber"`
	ErrorID          json.RawMessage `json:"ErrorId"`
	ErrorCode        *string         `json:"ErrorCode"`
	Message          *string         `json:"message"`
}

// UnmarshalJSON decodes one acknowledgement object.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return e.fromWire(&w)
}

func (e *Event) fromWire(w *wire) error {
	if w.EventType == nil {
		if w.Message != nil {
			return &ServiceMessageError{Message: *w.Message}
		}
		return fmt.Errorf("%w: object without EventType", ErrMalformed)
	}
	if *w.EventType == "" {
		return fmt.Errorf("%w: empty EventType", ErrMalformed)
	}
	*e = Event{Type: Type(*w.EventType)}
	if w.FragmentTimecode != nil {
		e.Timecode, e.HasTimecode = *w.FragmentTimecode, true
	}
	id, err := errorID(w.ErrorID)
	if err != nil {
		return err
	}
	e.ErrorID = id
	if w.ErrorCode != nil {
		e.ErrorCode = *w.ErrorCode
	}
	n, err := fragmentNumber(w.FragmentNumber)
	if err != nil {
		return err
	}
	e.FragmentNumber = n
	if e.Type == Error && e.ErrorID == 0 {
		return fmt.Errorf("%w: ERROR event without ErrorId", ErrMalformed)
	}
	return nil
}

// errorID accepts the number the service documents and, because some
// endpoints quote it, a string holding a number.
func errorID(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("%w: ErrorId %s is neither a number nor a string", ErrMalformed, raw)
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%w: ErrorId %q is not a number", ErrMalformed, s)
	}
	return n, nil
}

// fragmentNumber accepts the string the service sends and, because the
// documentation describes the field as a Long, a bare JSON integer too.
func fragmentNumber(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: FragmentNumber %s: %v", ErrMalformed, raw, err)
		}
	}
	if len(s) > MaxFragmentNumberLen {
		return "", fmt.Errorf("%w: FragmentNumber of %d characters exceeds %d", ErrMalformed, len(s), MaxFragmentNumberLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", fmt.Errorf("%w: FragmentNumber %q is not a string of digits", ErrMalformed, s)
		}
	}
	return s, nil
}

// MarshalJSON writes the flat object the service sends. Timecode is
// omitted when HasTimecode is false; ErrorId and ErrorCode only appear when
// set.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 160)), nil
}

// AppendJSON appends the event's JSON encoding to b.
func (e Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"EventType":`...)
	b = appendString(b, string(e.Type))
	if e.HasTimecode {
		b = append(b, `,"FragmentTimecode":`...)
		b = strconv.AppendInt(b, e.Timecode, 10)
	}
	b = append(b, `,"FragmentNumber":`...)
	b = appendString(b, e.FragmentNumber)
	if e.ErrorCode != "" {
		b = append(b, `,"ErrorCode":`...)
		b = appendString(b, e.ErrorCode)
	}
	if e.ErrorID != 0 {
		b = append(b, `,"ErrorId":`...)
		b = strconv.AppendInt(b, int64(e.ErrorID), 10)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. strconv.Quote is not JSON
// (it writes \x escapes), so escaping is left to encoding/json.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// Decoder reads acknowledgements from a PutMedia response body.
//
// It is not safe for concurrent use. After an error other than io.EOF the
// stream is unusable and every further call returns the same error,
// because a JSON stream cannot be resynchronised reliably.
type Decoder struct {
	lr  *limitReader
	dec *json.Decoder
	err error
}

// NewDecoder returns a decoder reading from r. The decoder buffers at most
// about MaxEventSize bytes beyond the current event.
func NewDecoder(r io.Reader) *Decoder {
	lr := &limitReader{r: r, allowed: MaxEventSize}
	return &Decoder{lr: lr, dec: json.NewDecoder(lr)}
}

// Next returns the next acknowledgement. It returns io.EOF when the stream
// ends cleanly between objects and io.ErrUnexpectedEOF when it ends inside
// one. A ServiceMessageError is returned (once, then the stream ends) when
// the service sent an error message instead of an acknowledgement.
func (d *Decoder) Next() (Event, error) {
	if d.err != nil {
		return Event{}, d.err
	}
	ev, err := d.next()
	if err != nil {
		d.err = err
	}
	return ev, err
}

func (d *Decoder) next() (Event, error) {
	var w wire
	start := d.dec.InputOffset()
	// Allow one more object of MaxEventSize from the end of the last one.
	d.lr.allowed = start + MaxEventSize
	if err := d.dec.Decode(&w); err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return Event{}, io.EOF
		case errors.Is(err, errTooLarge):
			return Event{}, fmt.Errorf("%w: object at byte %d is larger than %d bytes", ErrMalformed, start, MaxEventSize)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return Event{}, fmt.Errorf("ack: stream ended inside an object at byte %d: %w", start, io.ErrUnexpectedEOF)
		}
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) {
			return Event{}, fmt.Errorf("%w: after byte %d: %v", ErrMalformed, start, err)
		}
		// A read error of the underlying connection: pass it through so
		// the caller can tell a network failure from garbage.
		return Event{}, fmt.Errorf("ack: read: %w", err)
	}
	var ev Event
	err := ev.fromWire(&w)
	return ev, err
}

var errTooLarge = errors.New("ack: object too large")

// limitReader refuses to deliver bytes beyond allowed (an absolute offset),
// which caps how much json.Decoder can buffer for one object.
type limitReader struct {
	r       io.Reader
	read    int64
	allowed int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	room := l.allowed - l.read
	if room <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	return n, err
}

// Encode writes events as the service does, one object per line.
func Encode(w io.Writer, events ...Event) error {
	var b []byte
	for _, e := range events {
		b = e.AppendJSON(b)
		b = append(b, '\n')
	}
	_, err := w.Write(b)
	return err
}
