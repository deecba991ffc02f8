package logging

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEntryFields(t *testing.T) {
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "fragment rejected", 0)
	r.AddAttrs(
		slog.String("stream", "cam-0001"),
		slog.Int64("fragment_timecode", 1700000000123),
		slog.String("kvs_error_id", "4000"),
		slog.String("op", "PutMedia"),
		slog.Any("err", errors.New("throttled")),
		slog.Group("upload", slog.Int("attempt", 3), slog.Group("http", slog.Int("status-code", 429))),
		slog.Group("", slog.String("inline", "yes")),
		slog.String("message", "not the message"),
		slog.String("_trusted", "no"),
		slog.Duration("backoff", 1500*time.Millisecond),
	)
	got := map[string]string{}
	for _, f := range entryFields(r) {
		if _, dup := got[f.name]; dup {
			t.Errorf("field %s given twice", f.name)
		}
		got[f.name] = f.value
	}
	want := map[string]string{
		"MESSAGE":                 "fragment rejected",
		"PRIORITY":                "4",
		"SYSLOG_IDENTIFIER":       "kvscamd",
		"STREAM":                  "cam-0001",
		"FRAGMENT_TIMECODE":       "1700000000123",
		"KVS_ERROR_ID":            "4000",
		"OP":                      "PutMedia",
		"ERROR":                   "throttled",
		"UPLOAD_ATTEMPT":          "3",
		"UPLOAD_HTTP_STATUS_CODE": "429",
		"INLINE":                  "yes",
		"ATTR_MESSAGE":            "not the message",
		"ATTR__TRUSTED":           "no",
		"BACKOFF":                 "1.5s",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields\n%v\nwant\n%v", got, want)
	}
}

func TestEntryFieldsAliasesAndCaller(t *testing.T) {
	var r slog.Record
	slog.New(funcHandler(func(rec slog.Record) { r = rec })).Error("x", "timecode", 5, "error_id", "E1")
	got := map[string]string{}
	for _, f := range entryFields(r) {
		got[f.name] = f.value
	}
	if got["FRAGMENT_TIMECODE"] != "5" || got["KVS_ERROR_ID"] != "E1" || got["PRIORITY"] != "3" {
		t.Errorf("aliases or priority wrong: %v", got)
	}
	if !strings.HasSuffix(got["CODE_FILE"], "journal_test.go") || got["CODE_LINE"] == "" || !strings.Contains(got["CODE_FUNC"], "TestEntryFieldsAliasesAndCaller") {
		t.Errorf("caller fields wrong: %v", got)
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[slog.Level]int{
		slog.LevelDebug: 7, slog.LevelDebug + 2: 7, slog.LevelInfo: 6,
		slog.LevelWarn: 4, slog.LevelError: 3, slog.LevelError + 4: 3,
	} {
		if got := priority(l); got != want {
			t.Errorf("priority(%v) = %d, want %d", l, got, want)
		}
	}
}

func TestFieldNameLimit(t *testing.T) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.String(strings.Repeat("k", 100), "v"))
	fields := entryFields(r)
	if last := fields[len(fields)-1]; last.name != strings.Repeat("K", maxFieldName) {
		t.Errorf("long name became %q", last.name)
	}
}

func TestEncodeEntry(t *testing.T) {
	got := encodeEntry([]field{{"MESSAGE", "two\nlines"}, {"PRIORITY", "6"}})
	var want []byte
	want = append(want, "MESSAGE\n"...)
	want = binary.LittleEndian.AppendUint64(want, 9)
	want = append(want, "two\nlines\nPRIORITY=6\n"...)
	if string(got) != string(want) {
		t.Errorf("encoded %q, want %q", got, want)
	}
}

// funcHandler hands each record to a function.
type funcHandler func(slog.Record)

func (f funcHandler) Enabled(_ context.Context, _ slog.Level) bool { return true }
func (f funcHandler) Handle(_ context.Context, r slog.Record) error {
	f(r)
	return nil
}
func (f funcHandler) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f funcHandler) WithGroup(string) slog.Handler      { return f }
