package ack

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// decodeAll reads events until the stream ends and returns them with the
// terminating error (nil for a clean io.EOF).
func decodeAll(r io.Reader) ([]Event, error) {
	d := NewDecoder(r)
	var out []Event
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestDecoder(t *testing.T) {
	readers := map[string]func(string) io.Reader{
		"whole":   func(s string) io.Reader { return strings.NewReader(s) },
		"onebyte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":    func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for _, tc := range streamCases {
		for rname, mk := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				got, err := decodeAll(mk(tc.in))
				if tc.wantErr == "" && err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got %d events %v, want %d %v", len(got), got, len(tc.want), tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Errorf("event %d = %+v, want %+v", i, got[i], tc.want[i])
					}
				}
			})
		}
	}
}

func TestErrorIsSticky(t *testing.T) {
	d := NewDecoder(strings.NewReader(`nonsense {"EventType":"IDLE"}`))
	_, err1 := d.Next()
	_, err2 := d.Next()
	if err1 == nil || !errors.Is(err1, ErrMalformed) || err2 != err1 {
		t.Fatalf("errors = %v, %v; want the same ErrMalformed twice", err1, err2)
	}
}

func TestServiceMessageErrorType(t *testing.T) {
	_, err := decodeAll(strings.NewReader(`{"message":"The security token included in the request is expired"}`))
	var sm *ServiceMessageError
	if !errors.As(err, &sm) || !strings.Contains(sm.Message, "expired") {
		t.Fatalf("error %v is not a ServiceMessageError", err)
	}
}

func TestReadErrorPassesThrough(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader(`{"EventType":"IDLE"}{"Event`), iotest.ErrReader(boom))
	got, err := decodeAll(r)
	if len(got) != 1 || !errors.Is(err, boom) || errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, %v; want one event and the read error", got, err)
	}
}

// A long healthy stream must not be refused: the size limit is per object.
func TestLongStreamWithinLimit(t *testing.T) {
	var b bytes.Buffer
	n := 10 * MaxEventSize / 60
	for i := range n {
		if err := Encode(&b, Event{Type: Received, Timecode: int64(i), HasTimecode: true, FragmentNumber: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := decodeAll(&b)
	if err != nil || len(got) != n {
		t.Fatalf("decoded %d of %d events, err %v", len(got), n, err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, tc := range streamCases {
		for _, ev := range tc.want {
			b, err := ev.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var back Event
			if err := back.UnmarshalJSON(b); err != nil {
				t.Fatalf("%s: unmarshal %s: %v", tc.name, b, err)
			}
			if back != ev {
				t.Errorf("%s: round trip %s gave %+v, want %+v", tc.name, b, back, ev)
			}
		}
	}
}

func FuzzAckStream(f *testing.F) {
	for _, tc := range streamCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDecoder(bytes.NewReader(in))
		for i := 0; ; i++ {
			ev, err := d.Next()
			if err != nil {
				if _, err2 := d.Next(); err2 != err {
					t.Fatalf("error not sticky: %v then %v", err, err2)
				}
				return
			}
			if i > len(in) {
				t.Fatalf("more events (%d) than input bytes", i)
			}
			// Whatever decodes must survive its own encoding.
			b, _ := ev.MarshalJSON()
			var back Event
			if err := back.UnmarshalJSON(b); err != nil || back != ev {
				t.Fatalf("round trip of %+v via %s: %+v, %v", ev, b, back, err)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	var buf bytes.Buffer
	for _, tc := range streamCases {
		if tc.wantErr == "" {
			buf.WriteString(tc.in)
			buf.WriteByte('\n')
		}
	}
	in := bytes.Repeat(buf.Bytes(), 20)
	events, err := decodeAll(bytes.NewReader(in))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := decodeAll(bytes.NewReader(in)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}
