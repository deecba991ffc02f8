package mqtt

import (
	"slices"
	"testing"

	"github.com/kvscamd/kvscamd/daemon/status"
)

var validCodes = []string{status.CodeBadRequest, status.CodeUnknownOp, status.CodeBadArgument}

// The command decoder never panics; what it accepts is a remote op with
// the arguments that op needs, and what it refuses has a reason code.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"op":"ping"}`, `{"op":"status"}`, `{"op":"capture","stream":"c","on":true}`,
		`{"op":"set","stream":"c","fps":10,"mode":"record"}`, `{"op":"restart","stream":"c"}`,
		`{"op":"upload","stream":"c","from":"2026-01-02T15:04:05Z","to":"2026-01-02T15:09:05Z"}`,
		`{"op":`, `[]`, `{"op":"reload"}`, `{"op":"set","stream":"c","fps":-1}`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, e := DecodeCommand(b)
		if e != nil {
			if !slices.Contains(validCodes, e.Code) || e.Message == "" {
				t.Fatalf("refusal %+v", e)
			}
			return
		}
		if !slices.Contains(RemoteOps, c.Op) {
			t.Fatalf("accepted op %q", c.Op)
		}
		needsStream := c.Op != status.OpPing && c.Op != status.OpStatus
		if needsStream != (c.Stream != "") {
			t.Fatalf("%s accepted with stream %q", c.Op, c.Stream)
		}
		switch c.Op {
		case status.OpCapture:
			if c.On == nil {
				t.Fatal("capture accepted without on")
			}
		case status.OpSet:
			if c.Settings.Empty() {
				t.Fatal("set accepted without settings")
			}
		case status.OpUpload:
			if !c.To.After(c.From) {
				t.Fatalf("upload accepted from %s to %s", c.From, c.To)
			}
		}
	})
}

// The job decoder never panics and accepts only the two job operations.
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{
		`{"operation":"kvscamd.ping"}`, `{"operation":"kvscamd.reboot"}`,
		`{"operation":"kvscamd.upload","stream":"c","from":"2026-01-02T15:04:05Z","to":"2026-01-02T15:09:05Z"}`,
		`{"operation":"kvscamd.upload"}`, `{}`, `x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, e := DecodeJob(b)
		if e != nil {
			if !slices.Contains(validCodes, e.Code) || e.Message == "" {
				t.Fatalf("refusal %+v", e)
			}
			return
		}
		if c.Op != status.OpPing && c.Op != status.OpUpload {
			t.Fatalf("job accepted as %q", c.Op)
		}
		if c.Op == status.OpUpload && (c.Stream == "" || !c.To.After(c.From)) {
			t.Fatalf("upload job accepted: %+v", c)
		}
	})
}
