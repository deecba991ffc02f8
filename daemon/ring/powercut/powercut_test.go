package powercut

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvscamd/kvscamd/internal/testclips"
	"github.com/kvscamd/kvscamd/internal/testvm"
	"github.com/kvscamd/kvscamd/kvslocal"
)

// What a power cut is here. The guest's page cache, its block queues and
// whatever QEMU has not yet handed to the host are in QEMU's memory, and
// SIGKILL of QEMU loses them, as a power cut loses a computer's RAM. The
// disk image is opened with cache=writeback: QEMU writes through the host's
// page cache and turns every flush the guest sends (fdatasync, journal
// commits) into an fdatasync of the image. The host page cache survives the
// kill; it plays the disk's own storage, so what the guest's disk had
// accepted stays written, in whatever order QEMU's I/O threads completed it.
// (A disk whose own volatile cache is lost too is not modelled; the ring
// flushes before it reports an append, so it depends on flushes only.)
//
// The guest reports every durable append: kvscamd logs "ring: stored" at
// debug level right after the record's fdatasync, to the second serial
// port, which QEMU writes to a host file as the guest writes it, so the
// line survives the kill. Only complete lines count.

// Environment.
const (
	envCycles = "KVSCAMD_POWERCUT_CYCLES" // kill cycles; default defaultCycles
	envSeed   = "KVSCAMD_POWERCUT_SEED"   // seed of the kill moments; default random, logged
)

// Limits.
const (
	defaultCycles = 3
	// Kill moments: in one cycle of earlyKillEvery the kill comes up to
	// maxEarlyDelay after the guest booted (recovery, start-up); in the
	// others up to maxKillDelay after the guest reported its first to
	// maxAnchor-th durable append of that boot (appending and uploading
	// under way). Anchoring on the guest's own progress keeps the moments
	// meaningful however slow TCG is on a busy machine.
	earlyKillEvery = 4
	maxEarlyDelay  = 3 * time.Second
	maxAnchor      = 3
	maxKillDelay   = 4 * time.Second
	anchorTimeout  = 2 * time.Minute
	bootTimeout    = 2 * time.Minute
	drainTimeout   = 4 * time.Minute
	buildTimeout   = 15 * time.Minute
	diskSize       = 64 << 20
	// minFinalAppends: the final boot stores and uploads this many
	// fragments of its own before it is cut too.
	minFinalAppends = 3
)

// stored is one durable append the guest reported.
type stored struct {
	cycle int
	id    uint64
	tc    int64
}

var storedLine = regexp.MustCompile(`level=DEBUG msg="ring: stored" .*\bid=(\d+) timecode=(\d+) bytes=\d+$`)

func TestPowerCut(t *testing.T) {
	testvm.Require(t, "the power-cut test", []testvm.Tool{{Path: "mkfs.ext4", Package: "e2fsprogs"}, {Path: "gzip", Package: "gzip"}})
	cycles := defaultCycles
	if s := os.Getenv(envCycles); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of cycles", envCycles, s)
		}
		cycles = n
	}
	seed := rand.Uint64()
	if s := os.Getenv(envSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", envSeed, s)
		}
		seed = v
	}
	t.Logf("%d cycles, kill moments from seed %d (%s=%d repeats them)", cycles, seed, envSeed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	root := testvm.RepoRoot(t)
	work := t.TempDir()
	start := time.Now()
	bctx, bcancel := context.WithTimeout(context.Background(), buildTimeout)
	defer bcancel()
	pcDir := filepath.Join(root, "build", "powercut")
	testvm.Run(t, bctx, root, nil, filepath.Join(root, "daemon", "ring", "powercut", "build-vm.sh"), pcDir)
	goTool := testvm.GoCommand()
	rootfs := filepath.Join(work, "root")
	testvm.Run(t, bctx, root, nil, "cp", "-a", filepath.Join(pcDir, "base"), rootfs)
	testvm.Run(t, bctx, root, []string{"CGO_ENABLED=0"}, goTool, "build", "-trimpath", "-o", filepath.Join(rootfs, "kvscamd"), "./daemon")
	testvm.Run(t, bctx, root, []string{"CGO_ENABLED=0"}, goTool, "build", "-trimpath", "-o", filepath.Join(rootfs, "guestfwd"), "./daemon/ring/powercut/guestfwd")

	kvs := kvslocal.Start(t, kvslocal.Options{})
	if _, err := kvs.CreateStream("cam-pc", 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	creds := kvs.IssueCredentials(3 * time.Hour)
	u, err := url.Parse(kvs.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	clip := testclips.Get("high-aud.h264")
	copyFile(t, clip.Path(), filepath.Join(rootfs, "clip.h264"))
	// The guest reaches the endpoint as 127.0.0.1:port through guestfwd,
	// the address kvslocal advertises for PutMedia too.
	cfg := fmt.Sprintf(`thing_name = "cam-pc"
region = "us-west-2"
state_dir = "/state/kvscamd"
clock_sync = "trust"
log_level = "debug"

[credentials]
source = "static"
access_key_id = %q
secret_access_key = %q
session_token = %q

[kvs]
endpoint = "http://127.0.0.1:%s"

[[stream]]
name = "cam-pc"
driver = "file"
path = "/clip.h264"
loop = true
realtime = true
fps = %d
keyframe_interval = "1s"
ring_size = "16MiB"
`, creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken, port, clip.FPS)
	writeFile(t, filepath.Join(rootfs, "kvscamd.toml"), cfg, 0o600)
	writeFile(t, filepath.Join(rootfs, "init"), guestInit(port), 0o755)
	initrd := filepath.Join(work, "initrd.gz")
	testvm.Run(t, bctx, rootfs, nil, "sh", "-c", "find . | cpio -o -H newc 2>/dev/null | gzip -1 > "+initrd)
	disk := filepath.Join(work, "disk.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, diskSize); err != nil {
		t.Fatal(err)
	}
	testvm.Run(t, bctx, root, nil, "mkfs.ext4", "-q", "-F", disk)
	vm := &guest{t: t, root: root, vmlinux: filepath.Join(pcDir, "vmlinux"), initrd: initrd, disk: disk, work: work}
	t.Logf("setup (kernel, modules, binaries, disk) %v", time.Since(start).Round(time.Millisecond))

	var all []stored
	var kills []time.Time
	opened, torn := 0, 0
	for c := 0; c < cycles; c++ {
		k := kill{delay: time.Duration(rng.Int64N(int64(maxKillDelay)))}
		if rng.IntN(earlyKillEvery) == 0 {
			k.delay = time.Duration(rng.Int64N(int64(maxEarlyDelay)))
		} else {
			k.after = 1 + rng.IntN(maxAnchor)
		}
		res := vm.boot(c, k, nil)
		kills = append(kills, res.killedAt)
		all = append(all, res.stored...)
		torn += res.torn
		if res.opened {
			opened++
		}
		t.Logf("cycle %d: killed %v after %s (boot %v), %d appends reported, ring opened %v, torn tails cut %d",
			c, k.delay.Round(time.Millisecond), k, res.bootTime.Round(time.Millisecond), len(res.stored), res.opened, res.torn)
	}

	// The last boot runs until the endpoint has every fragment the guest
	// ever reported stored, then is cut like the others.
	want := map[int64]bool{}
	for _, s := range all {
		want[s.tc] = true
	}
	res := vm.boot(cycles, kill{drain: true}, func(now []stored) bool {
		if len(now) < minFinalAppends {
			return false
		}
		got := persisted(kvs)
		for tc := range want {
			if !got[tc] {
				return false
			}
		}
		for _, s := range now {
			if !got[s.tc] {
				return false
			}
		}
		return true
	})
	for _, s := range res.stored {
		want[s.tc] = true
	}
	all = append(all, res.stored...)
	torn += res.torn
	if !res.opened {
		t.Fatalf("the final boot did not open the ring; its log:\n%s", res.log)
	}
	got := persisted(kvs)
	var lost []int64
	for tc := range want {
		if !got[tc] {
			lost = append(lost, tc)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d fragments whose append had returned never reached the endpoint (e.g. timecode %d); final boot log:\n%s",
			len(lost), len(want), lost[0], res.log)
	}
	// Ring order is id order is timecode order, across every restart.
	for i := 1; i < len(all); i++ {
		if all[i].id <= all[i-1].id || all[i].tc <= all[i-1].tc {
			t.Fatalf("append order broken across power cuts: id %d timecode %d (cycle %d) after id %d timecode %d (cycle %d)",
				all[i].id, all[i].tc, all[i].cycle, all[i-1].id, all[i-1].tc, all[i-1].cycle)
		}
	}
	// The endpoint parses every fragment strictly; it must have refused
	// none, except a fragment whose upload the power cut itself broke off
	// (the body ends inside an element: 4006 as the relay closes), which
	// must then have been sent whole after the reboot.
	st := state(kvs)
	cutShort := 0
	for _, a := range st.Acks {
		if a.EventType != kvslocal.EventError && a.ErrorID == 0 {
			continue
		}
		if a.ErrorID == kvslocal.ErrInvalidMKV && got[a.FragmentTimecode] && slices.ContainsFunc(kills, func(k time.Time) bool {
			return !a.At.Before(k) && a.At.Sub(k) < cutAckWindow
		}) {
			cutShort++
			continue
		}
		t.Fatalf("the endpoint refused a fragment: %+v", a)
	}
	t.Logf("%d power cuts: the ring opened after every boot that got that far (%d of %d kill cycles, and the final one); "+
		"%d durable appends reported, all %d distinct fragments acknowledged by the endpoint (%d fragments received in all, resends included); "+
		"%d torn tails cut; %d uploads broken off by a cut (refused as cut short, then sent whole); total %v",
		cycles, opened, cycles, len(all), len(want), len(st.Fragments), torn, cutShort, time.Since(start).Round(time.Second))
}

// cutAckWindow is how soon after QEMU is killed the endpoint answers the
// body the cut ended mid-element.
const cutAckWindow = 2 * time.Second

// kill says when a boot is cut: delay after the guest booted (after = 0)
// or after its after-th durable append; drain: once done says so.
type kill struct {
	delay time.Duration
	after int
	drain bool
}

func (k kill) String() string {
	if k.after == 0 {
		return "boot"
	}
	return fmt.Sprintf("append %d", k.after)
}

// guest boots the VM.
type guest struct {
	t                           *testing.T
	root, vmlinux, initrd, disk string
	work                        string
}

type bootResult struct {
	stored   []stored
	opened   bool // the daemon started its stream (so the ring opened)
	torn     int
	bootTime time.Duration
	killedAt time.Time // when QEMU was killed
	log      string
}

// boot starts the VM, waits for the guest to report that it booted, and
// SIGKILLs QEMU when k says; for a drain, once done reports true for the
// appends reported so far in this boot (checked as the guest's reports
// arrive), failing after drainTimeout.
func (g *guest) boot(cycle int, k kill, done func([]stored) bool) bootResult {
	t := g.t
	t.Helper()
	console := filepath.Join(g.work, fmt.Sprintf("console-%d.log", cycle))
	report := filepath.Join(g.work, fmt.Sprintf("report-%d.log", cycle))
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-display", "none", "-monitor", "none",
		"-no-reboot", "-bios", "/usr/share/qemu/qboot.rom", "-kernel", g.vmlinux, "-initrd", g.initrd,
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init",
		"-serial", "file:"+console, "-serial", "file:"+report,
		"-drive", "file="+g.disk+",format=raw,if=virtio,cache=writeback,aio=threads",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	var qout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qout, &qout
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		c, _ := os.ReadFile(console)
		r, _ := os.ReadFile(report)
		t.Fatalf("cycle %d: %s\nqemu: %s\nconsole:\n%s\nguest report:\n%s", cycle, fmt.Sprintf(format, args...), qout.String(), c, r)
	}
	// Polling files the guest writes, each wait with a deadline.
	wait := func(limit time.Duration, cond func() bool) bool {
		deadline := time.Now().Add(limit)
		for !cond() {
			select {
			case err := <-exited:
				exited <- err
				return cond()
			default:
			}
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(50 * time.Millisecond)
		}
		return true
	}
	booted := func() bool {
		b, _ := os.ReadFile(report)
		return bytes.Contains(b, []byte("PC-BOOTED\r\n")) || bytes.Contains(b, []byte("PC-BOOTED\n"))
	}
	if !wait(bootTimeout, booted) {
		fail("the guest did not boot within %v", bootTimeout)
	}
	res := bootResult{bootTime: time.Since(began)}
	progress := func() []stored { b, _ := os.ReadFile(report); return parseStored(cycle, b) }
	switch {
	case k.drain:
		if !wait(drainTimeout, func() bool { return done(progress()) }) {
			fail("the endpoint did not get every reported fragment within %v", drainTimeout)
		}
	case k.after > 0:
		if !wait(anchorTimeout, func() bool { return len(progress()) >= k.after }) {
			fail("the guest did not report %d appends within %v of booting", k.after, anchorTimeout)
		}
		fallthrough
	default:
		// The kill moment itself, not a synchronisation.
		time.Sleep(k.delay)
	}
	if err := cmd.Process.Kill(); err != nil {
		fail("kill qemu: %v", err)
	}
	res.killedAt = time.Now()
	<-exited
	exited <- nil
	b, _ := os.ReadFile(report)
	res.log = string(b)
	if bytes.Contains(b, []byte("PC-MOUNT-FAIL")) {
		fail("the guest could not mount its state disk")
	}
	res.stored = parseStored(cycle, b)
	res.opened = len(res.stored) > 0
	for _, l := range completeLines(b) {
		if strings.Contains(l, `msg="kvscamd running"`) { // after every ring opened
			res.opened = true
		}
		if strings.Contains(l, "torn by a crash") {
			res.torn++
		}
		// Recovery from a power cut finds torn tails at most: damage,
		// an unopenable ring or lost video would be a broken promise.
		for _, bad := range []string{"ring: open", "damaged", "DELETING", "cannot undo", "fragment not stored", "PC-EXIT"} {
			if strings.Contains(l, bad) {
				fail("the guest reported %q:\n%s", bad, l)
			}
		}
	}
	return res
}

// completeLines returns the lines of a guest report that were written
// whole; the last one may have been cut by the kill.
func completeLines(b []byte) []string {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
	return lines[:len(lines)-1]
}

// parseStored returns the durable appends a guest report lists.
func parseStored(cycle int, b []byte) []stored {
	var out []stored
	for _, l := range completeLines(b) {
		if m := storedLine.FindStringSubmatch(l); m != nil {
			id, _ := strconv.ParseUint(m[1], 10, 64)
			tc, _ := strconv.ParseInt(m[2], 10, 64)
			out = append(out, stored{cycle: cycle, id: id, tc: tc})
		}
	}
	return out
}

// guestInit is the VM's init: modules, network, the state disk, the relay
// to the endpoint, then kvscamd with its log on the second serial port.
func guestInit(port string) string {
	return `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci virtio_blk virtio_net crc32c_generic ext4; do modprobe $m; done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
mount -t ext4 /dev/vda /state || { echo PC-MOUNT-FAIL > /dev/ttyS1; poweroff -f; }
/guestfwd 127.0.0.1:` + port + ` 10.0.2.2:` + port + ` &
echo PC-BOOTED > /dev/ttyS1
/kvscamd run -config /kvscamd.toml -socket /tmp/kvscamd.sock > /dev/ttyS1 2>&1
echo "PC-EXIT $?" > /dev/ttyS1
poweroff -f
`
}

// persisted returns the producer timestamps of the fragments the endpoint
// persisted.
func persisted(kvs *kvslocal.Server) map[int64]bool {
	got := map[int64]bool{}
	for _, f := range state(kvs).Fragments {
		if f.Persisted {
			got[f.ProducerTime] = true
		}
	}
	return got
}

// state copies what the endpoint holds for the stream; the State a Wait
// condition sees is the server's own and must not outlive the call.
func state(kvs *kvslocal.Server) kvslocal.State {
	return kvslocal.State{Fragments: kvs.Fragments("cam-pc"), Acks: kvs.Acks("cam-pc")}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b), 0o644)
}

func writeFile(t *testing.T, path, body string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), perm); err != nil {
		t.Fatal(err)
	}
}
