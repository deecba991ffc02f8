#!/bin/bash
# Boots the test VM (QEMU, TCG, no KVM needed) with a static test binary as
# its workload and exits with the binary's exit code.
#   qemu-exec.sh TEST_BINARY [ARGS...]
# Env: VM_DIR   output of build-vm.sh (vmlinux, base/), default build/vm
#      VM_FILES extra files copied to / in the VM
#      VM_ENV   "K=V ..." for the test binary
#      VM_TIMEOUT seconds before the VM is killed (default 300)
# Exit 125: the VM died, panicked or timed out before reporting.
set -euo pipefail
bin=$1
shift
vm=$(realpath "${VM_DIR:-build/vm}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a "$vm/base/." "$work/root"
cp "$bin" "$work/root/test.bin"
for f in ${VM_FILES:-}; do cp "$f" "$work/root/"; done
args=""
for a in "$@"; do args="$args '${a//\'/}'"; done
cat > "$work/root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
modprobe vivid n_devs=1 node_types=0x1
modprobe v4l2loopback devices=2 video_nr=10,11 card_label=loop0,loop1 max_buffers=8
cd / && env ${VM_ENV:-} /test.bin $args
echo "VMEXEC-RC=\$?"
poweroff -f
INIT
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initrd.gz")
timeout "${VM_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
	-bios /usr/share/qemu/qboot.rom -kernel "$vm/vmlinux" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 rdinit=/init" </dev/null | tr -d '\r' | tee "$work/log" \
	| grep -a -v -e '^VMEXEC-RC=' -e 'reboot: Power down' || true
rc=$(sed -n 's/^VMEXEC-RC=\([0-9]*\).*/\1/p' "$work/log" | tail -1)
exit "${rc:-125}"
