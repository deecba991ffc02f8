#!/bin/bash
# Measures kvscamd's resident memory under Debian's own kernel (the one the
# power-cut VM boots, 6.1 on Debian 12, which maps no large folios for
# ext4), with the binary on an ext4 disk as on a camera's card: one stream
# of the bench clip (make bench-daemon encodes it) replayed in real time,
# capturing into the ring (record mode, so nothing is uploaded), sampled
# from /proc/PID/status every 20 s for 80 s. Prints the samples; the
# host's own figures come from make bench-daemon.
# Usage: scripts/vm-rss.sh [workdir]   (root not needed; QEMU under TCG)
set -euo pipefail
root=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")
w=$(realpath -m "${1:-$root/build/vm-rss}")
clip=$root/build/bench-cache/bench-1080p30-4M.h264
pc=$root/build/powercut
cd "$root"
if [ ! -f "$clip" ]; then
	echo "vm-rss: $clip is missing; run make bench-daemon once to encode it" >&2
	exit 1
fi
"$root/daemon/ring/powercut/build-vm.sh" "$pc"
rm -rf "$w"
mkdir -p "$w/disk"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$w/disk/kvscamd" ./daemon
cp "$clip" "$w/disk/clip.h264"
cat > "$w/disk/kvscamd.toml" <<'CFG'
thing_name = "cam-vm"
region = "us-west-2"
state_dir = "/state/state"
clock_sync = "trust"

[credentials]
source = "static"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "not-a-secret"

[kvs]
endpoint = "http://127.0.0.1:9"

[[stream]]
name = "cam-vm"
driver = "file"
path = "/state/clip.h264"
loop = true
realtime = true
fps = 30
mode = "record"
ring_size = "256MiB"
CFG
truncate -s 1G "$w/disk.img"
mkfs.ext4 -q -F -d "$w/disk" "$w/disk.img"
cp -a "$pc/base" "$w/root"
cat > "$w/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci virtio_blk crc32c_generic ext4; do modprobe $m; done
mkdir -p /state; mount -t ext4 /dev/vda /state
/state/kvscamd run -config /state/kvscamd.toml -socket /tmp/k.sock > /state/log 2>&1 &
pid=$!
echo "kernel $(uname -r)" > /dev/ttyS1
for t in 20 40 60 80; do
	sleep 20
	echo "t=${t}s $(grep -E '^(VmHWM|VmRSS|RssAnon|RssFile):' /proc/$pid/status | tr -s ' \t\n' ' ')" > /dev/ttyS1
done
poweroff -f
INIT
chmod 755 "$w/root/init"
(cd "$w/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$w/initrd.gz")
timeout 300 qemu-system-x86_64 -accel tcg -m 512 -display none -monitor none -no-reboot \
	-bios /usr/share/qemu/qboot.rom -kernel "$pc/vmlinux" -initrd "$w/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 rdinit=/init" \
	-serial "file:$w/console.log" -serial "file:$w/report.log" \
	-drive "file=$w/disk.img,format=raw,if=virtio,cache=writeback,aio=threads" || true
if ! grep -q '^t=80s' "$w/report.log"; then
	echo "vm-rss: the VM did not report all samples; see $w/console.log" >&2
	cat "$w/report.log" >&2
	exit 1
fi
cat "$w/report.log"
