package ring

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kvscamd/kvscamd/fragmenter"
)

// Benchmarks write to RING_BENCH_DIR when set (e.g. a mounted SD card),
// otherwise to the test's temporary directory.

const benchFragment = 200_000 // bytes: about 2 s of 720p at 800 kbit/s

func benchDir(b *testing.B) string {
	if d := os.Getenv("RING_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "ringbench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// procWriteBytes returns this process's write_bytes from /proc/self/io:
// bytes sent towards the block device, whole pages, including rewrites of
// a partly written page after fdatasync. 0 on tmpfs.
func procWriteBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkAppendAck measures what the pipeline does per fragment: one
// durable Append and, once uploaded, one durable Ack. The ring is small
// enough to wrap, so eviction is included. Metrics: MB/s of fragments;
// wa-app = every byte the ring wrote (records, segment headers, indexes,
// ack entries) per fragment byte; wa-disk = /proc/self/io write_bytes per
// fragment byte (page granularity, as the device sees it, without the
// filesystem journal).
func BenchmarkAppendAck(b *testing.B) {
	dir := benchDir(b)
	r := mustOpen(b, dir, Options{Capacity: 64 << 20})
	defer r.Close()
	frags := [4]fragmenter.Fragment{}
	for i := range frags {
		frags[i] = genFragment(int64(i), benchFragment)
	}
	b.SetBytes(int64(len(frags[0].Cluster) + len(frags[0].Header)))
	b.ReportAllocs()
	st0, io0 := r.Stats(), procWriteBytes(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frags[i%len(frags)]
		f.Timecode += int64(i) * fragSpacing
		id, err := r.Append(&f)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Ack(id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := r.Stats()
	frag := float64(st.BytesAppended - st0.BytesAppended)
	b.ReportMetric(float64(st.BytesWritten-st0.BytesWritten)/frag, "wa-app")
	if io := procWriteBytes(b) - io0; io > 0 {
		b.ReportMetric(float64(io)/frag, "wa-disk")
	}
}

// BenchmarkNext measures reading (with checksum verification and decoding)
// of stored fragments, recycling each as the sender does.
func BenchmarkNext(b *testing.B) {
	dir := benchDir(b)
	r := mustOpen(b, dir, Options{Capacity: 64 << 20})
	defer r.Close()
	const n = 100
	for i := int64(0); i < n; i++ {
		f := genFragment(i, benchFragment)
		mustAppend(b, r, &f)
	}
	b.SetBytes(benchFragment)
	b.ReportAllocs()
	b.ResetTimer()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		_, f, err := r.Next(ctx, ID(i%n+1))
		if err != nil {
			b.Fatal(err)
		}
		r.Recycle(f) // as the sender does
	}
}

// BenchmarkOpen measures recovery of a full ring (RING_BENCH_OPEN_MIB, 256
// by default): after a clean Close (indexes only) and after a crash (the
// active segment has no index and is walked); ms/GiB scales it to a GiB.
// Set RING_BENCH_DROP_CACHES=1 (root) to start every Open with a cold page
// cache, as after a reboot.
func BenchmarkOpen(b *testing.B) {
	mib := int64(256)
	if s := os.Getenv("RING_BENCH_OPEN_MIB"); s != "" {
		mib, _ = strconv.ParseInt(s, 10, 64)
	}
	dir := benchDir(b)
	o := Options{Capacity: mib << 20}
	r := mustOpen(b, dir, o)
	for i := int64(0); r.Stats().Lost == 0; i++ {
		f := genFragment(i%8, benchFragment)
		f.Timecode = baseTC + i*fragSpacing
		mustAppend(b, r, &f)
	}
	frags := r.Stats().Fragments
	r.mu.Lock()
	active := r.activeLocked()
	r.mu.Unlock()
	r.Close()
	cold := os.Getenv("RING_BENCH_DROP_CACHES") == "1"
	for _, crash := range []bool{false, true} {
		name := "clean"
		if crash {
			name = "after-crash"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if crash {
					os.Remove(active.idxPath)
				}
				if cold {
					unixSync()
					if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				r := mustOpen(b, dir, o)
				b.StopTimer()
				if got := r.Stats().Fragments; got != frags {
					b.Fatalf("%d fragments after Open, want %d", got, frags)
				}
				r.Close()
				b.StartTimer()
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perOp/1e6*1024/float64(mib), "ms/GiB")
			b.ReportMetric(float64(frags), "fragments")
		})
	}
}

func unixSync() { syscall.Sync() }
