package kvslocal_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/mkvcheck"
	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/kvslocal"
	"github.com/kvscamd/kvscamd/media"
)

// fragmentClip runs a committed clip through the project's fragmenter,
// with frames stamped from start at the clip's frame rate.
func fragmentClip(t *testing.T, clip testclips.Clip, start time.Time) []fragmenter.Fragment {
	t.Helper()
	rd := h264.NewReader(bytes.NewReader(clip.Read(t)))
	f := fragmenter.New(fragmenter.Config{FragmentDuration: time.Second})
	var out []fragmenter.Fragment
	for k := 0; ; k++ {
		au, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fr := media.Frame{NALUs: au, Time: start.Add(time.Duration(k) * time.Second / time.Duration(clip.FPS)), Key: h264.IsIDR(au), Seq: uint64(k)}
		if frag, ok := f.Push(fr); ok {
			out = append(out, frag)
		}
	}
	if frag, ok := f.Flush(); ok {
		out = append(out, frag)
	}
	return out
}

// Fragments made by the fragmenter are accepted as they are, hashed the
// same on both sides, and stored as a playable file.
func TestFragmenterOutputAccepted(t *testing.T) {
	for _, name := range []string{"baseline-repeat.h264", "high-aud.h264", "multislice.h264"} {
		t.Run(name, func(t *testing.T) {
			clip := testclips.Get(name)
			frags := fragmentClip(t, clip, time.Now().Add(-time.Minute).Truncate(time.Millisecond))
			srv := kvslocal.Start(t, kvslocal.Options{})
			newStream(t, srv, "cam", 24*time.Hour)
			c := mustOpen(t, srv, "cam", pmOpts{})
			go func() {
				_ = c.send(frags[0].Header)
				for _, f := range frags {
					if c.send(f.Cluster) != nil {
						return
					}
				}
				c.closeBody()
			}()
			acks, err := c.all()
			if err != nil {
				t.Fatal(err)
			}
			persisted := 0
			for _, a := range acks {
				switch a.EventType {
				case "ERROR":
					t.Fatalf("fragmenter output rejected: %v", describe(acks))
				case "PERSISTED":
					if a.tc() != frags[persisted].Timecode {
						t.Fatalf("PERSISTED %d out of order, want %d", a.tc(), frags[persisted].Timecode)
					}
					persisted++
				}
			}
			got := srv.Fragments("cam")
			if persisted != len(frags) || len(got) != len(frags) {
				t.Fatalf("%d fragments sent, %d persisted, %d stored", len(frags), persisted, len(got))
			}
			total := 0
			for i, f := range frags {
				sum := sha256.Sum256(f.Cluster)
				if got[i].SHA256 != hex.EncodeToString(sum[:]) || got[i].Frames != f.Frames || got[i].Timecode != f.Timecode {
					t.Fatalf("fragment %d: stored %+v, sent timecode %d frames %d", i, got[i], f.Timecode, f.Frames)
				}
				total += f.Frames
			}
			mkvcheck.Check(t, got[0].File, mkvcheck.Expect{Frames: total, Clusters: len(frags)})
		})
	}
}
