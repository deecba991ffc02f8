package sender

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/credentials"
	"github.com/kvscamd/kvscamd/daemon/ring"
	"github.com/kvscamd/kvscamd/fragmenter"
	"github.com/kvscamd/kvscamd/h264"
	"github.com/kvscamd/kvscamd/internal/backoff"
	"github.com/kvscamd/kvscamd/kvslocal"
	"github.com/kvscamd/kvscamd/media"
)

// camFragments makes fragments the size a 1080p30 camera at 4 Mbit/s
// produces: 2 s (60 frames) and about 1 MB each. The pictures come from a
// test clip; every access unit is padded with an H.264 filler-data NAL
// unit to the bitrate, so the stream stays valid for the endpoint's parser.
func camFragments(tb testing.TB, n int, start time.Time) []fragmenter.Fragment {
	next := camSource(tb, start)
	out := make([]fragmenter.Fragment, n)
	for i := range out {
		out[i] = next()
	}
	return out
}

// camSource returns a generator of consecutive camera-sized fragments.
func camSource(tb testing.TB, start time.Time) func() fragmenter.Fragment {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "baseline-repeat.h264"))
	if err != nil {
		tb.Fatal(err)
	}
	const bitrate = 4_000_000
	const perFrame = bitrate / 8 / 30
	var aus [][][]byte
	r := h264.NewReader(bytesReader(data))
	for {
		au, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		size := 0
		cp := make([][]byte, 0, len(au)+1)
		for _, nalu := range au {
			cp = append(cp, append([]byte(nil), nalu...))
			size += len(nalu)
		}
		if pad := perFrame - size; pad > 64 {
			cp = append(cp, paddingSEI(pad))
		}
		aus = append(aus, cp)
	}
	fr := fragmenter.New(fragmenter.Config{FragmentDuration: 2 * time.Second})
	k := 0
	return func() fragmenter.Fragment {
		for ; ; k++ {
			au := aus[k%len(aus)]
			f, ok := fr.Push(media.Frame{NALUs: au, Time: start.Add(time.Duration(k) * time.Second / 30), Key: h264.IsIDR(au), Seq: uint64(k)})
			if ok {
				k++
				f.Cluster = append([]byte(nil), f.Cluster...)
				return f
			}
		}
	}
}

// paddingSEI returns an SEI NAL unit of about n bytes carrying
// user_data_unregistered, which decoders skip and the fragmenter keeps
// (it drops filler-data units).
func paddingSEI(n int) []byte {
	payload := n - 8 - n/255
	b := []byte{6, 5} // SEI, payload type 5
	for p := payload; ; p -= 255 {
		if p < 255 {
			b = append(b, byte(p))
			break
		}
		b = append(b, 0xFF)
	}
	for i := 0; i < payload; i++ {
		b = append(b, 0x55) // 16 bytes of UUID, then data; no start-code patterns
	}
	return append(b, 0x80)
}

// benchRig is a sender on a fresh ring against an in-process endpoint.
type benchRig struct {
	kvs    *kvslocal.Server
	ring   *ring.Ring
	s      *Sender
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	latency []time.Duration // fragment ready to RECEIVED, from OnReceived
}

func newBenchRig(b *testing.B, quotas bool) *benchRig {
	b.Helper()
	o := kvslocal.Options{Region: "eu-west-1", AckFraming: kvslocal.FramingNewline}
	if !quotas {
		o.MaxFragmentsPerSecond, o.MaxBytesPerSecond, o.PutMediaCallsPerSecond = -1, -1, -1
	}
	kvs := kvslocal.Start(b, o)
	if _, err := kvs.CreateStream(testStream, time.Hour); err != nil {
		b.Fatal(err)
	}
	r, err := ring.Open(b.TempDir(), ring.Options{Capacity: 512 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return &benchRig{kvs: kvs, ring: r, done: make(chan error, 1)}
}

func (rig *benchRig) start(b *testing.B, unpaced bool) {
	s, err := New(Config{
		Stream: testStream, Region: "eu-west-1", Ring: rig.ring,
		Credentials:     static(rig.kvs.Credentials()),
		ControlEndpoint: rig.kvs.URL,
		Backoff:         backoff.New(10*time.Millisecond, 100*time.Millisecond),
		// Lift the sender's own quota pacing as well when the endpoint
		// has none.
		NoQuotaPacing: unpaced,
		OnReceived: func(_ ring.ID, d time.Duration) {
			rig.mu.Lock()
			rig.latency = append(rig.latency, d)
			rig.mu.Unlock()
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	rig.s = s
	ctx, cancel := context.WithCancel(context.Background())
	rig.cancel = cancel
	go func() { rig.done <- s.Run(ctx) }()
}

func (rig *benchRig) stop() {
	rig.cancel()
	<-rig.done
}

func (rig *benchRig) waitAcked(b *testing.B) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if _, ok := rig.ring.FirstUnacked(); !ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("backlog not drained: %+v", rig.s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBacklogDrain measures how fast an outage backlog of 1 MB / 2 s
// fragments drains to the local endpoint. "quota" applies the service's
// per-stream limits on both sides (5 fragments/s bounds it); "unlimited"
// lifts them to show the sender's own ceiling. cpu-s/video-min is the
// process CPU (sender, ring reads and the in-process endpoint together, so
// an upper bound for the sender) per minute of video.
func BenchmarkBacklogDrain(b *testing.B) {
	for _, quotas := range []bool{true, false} {
		name := "unlimited"
		if quotas {
			name = "quota"
		}
		b.Run(name, func(b *testing.B) {
			const n = 30 // one minute of video
			frags := camFragments(b, n, time.Now().Add(-time.Hour))
			bytes := 0
			for _, f := range frags {
				bytes += len(f.Cluster)
			}
			var total, cpu time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				rig := newBenchRig(b, quotas)
				for i := range frags {
					if _, err := rig.ring.Append(&frags[i]); err != nil {
						b.Fatal(err)
					}
				}
				rig.start(b, !quotas)
				c0, t0 := cpuTime(), time.Now()
				b.StartTimer()
				rig.waitAcked(b)
				b.StopTimer()
				total += time.Since(t0)
				cpu += cpuTime() - c0
				rig.stop()
			}
			iters := float64(b.N)
			b.ReportMetric(float64(bytes)*iters/total.Seconds()/1e6, "MB/s")
			b.ReportMetric(float64(n)*iters/total.Seconds(), "fragments/s")
			b.ReportMetric(cpu.Seconds()/iters/(float64(n)*2/60), "cpu-s/video-min")
		})
	}
}

// BenchmarkLiveLatency measures fragment ready (taken from the ring) to
// RECEIVED for live 1 MB fragments appended at 4 per second.
func BenchmarkLiveLatency(b *testing.B) {
	rig := newBenchRig(b, true)
	rig.start(b, false)
	defer rig.stop()
	next := camSource(b, time.Now().Add(-time.Hour))
	for b.Loop() {
		f := next()
		if _, err := rig.ring.Append(&f); err != nil {
			b.Fatal(err)
		}
		rig.waitAcked(b)
		time.Sleep(250 * time.Millisecond) // camera pacing within the 5 fragments/s quota
	}
	rig.mu.Lock()
	lat := slices.Clone(rig.latency)
	rig.mu.Unlock()
	if len(lat) == 0 {
		b.Fatal("no latencies recorded")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkSenderCPU measures the CPU the sender and its ring reads use
// per minute of 1080p30 4 Mbit/s video (2 s, ~1 MB fragments), with the
// endpoint in a separate process so that its parsing is not counted. Each
// iteration appends one minute of video with no sender running, then
// starts a sender and measures until the ring is fully acknowledged.
// Quotas are lifted on both sides: the number is CPU per byte moved, which
// does not depend on how fast the backlog drains.
func BenchmarkSenderCPU(b *testing.B) {
	url, key, secret := startEndpointProcess(b)
	const n = 30 // one minute of video
	next := camSource(b, time.Now().Add(-time.Hour))
	r, err := ring.Open(b.TempDir(), ring.Options{Capacity: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var cpu time.Duration
	var moved uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for range n {
			f := next()
			if _, err := r.Append(&f); err != nil {
				b.Fatal(err)
			}
		}
		s, err := New(Config{
			Stream: testStream, Region: "eu-west-1", Ring: r,
			Credentials:     credentials.StaticProvider{Value: credentials.Credentials{AccessKeyID: key, SecretAccessKey: secret}},
			ControlEndpoint: url,
			NoQuotaPacing:   true,
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		c0 := cpuTime()
		b.StartTimer()
		go func() { done <- s.Run(ctx) }()
		(&benchRig{ring: r, s: s}).waitAcked(b)
		b.StopTimer()
		cpu += cpuTime() - c0
		cancel()
		<-done
		st := s.Stats()
		if st.Acked != n || st.Skipped != 0 {
			b.Fatalf("stats %+v: want %d fragments acknowledged", st, n)
		}
		moved += st.Bytes
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/video-min")
	b.ReportMetric(float64(moved)/float64(b.N)/1e6, "MB/video-min")
}
