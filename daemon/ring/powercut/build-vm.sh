#!/bin/bash
# Builds the initramfs base of the power-cut test VM into $1 (default
# build/powercut): busybox plus the virtio (PCI, block, net) and ext4
# modules of the kernel that drivers/v4l2/vmtest/build-vm.sh prepared in
# $2 (default build/vm), whose vmlinux the VM boots. Reused while
# base/.stamp names that kernel version.
#
# Needs: dpkg, depmod (kmod), busybox-static, and the output of the V4L2
# VM build (run drivers/v4l2/vmtest/build-vm.sh first).
set -euo pipefail
out=$(realpath -m "${1:-build/powercut}")
vm=$(realpath -m "${2:-build/vm}")
deb=$(ls "$vm"/kernel-*.deb 2>/dev/null | head -1)
[ -n "$deb" ] && [ -f "$vm/vmlinux" ] || { echo "build-vm: no kernel in $vm; run drivers/v4l2/vmtest/build-vm.sh $vm first" >&2; exit 1; }
KV=$(basename "$deb" .deb)
KV=${KV#kernel-}
mkdir -p "$out"
cd "$out"
if [ -f base/.stamp ] && [ "$(cat base/.stamp)" = "$KV" ]; then
	echo "build-vm: cached power-cut base for $KV in $out"
	exit 0
fi
[ -x /bin/busybox ] || { echo "build-vm: /bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }
rm -rf kroot base
dpkg -x "$deb" kroot
depmod -b "$PWD/kroot" "$KV"
mkdir -p base/bin base/dev base/proc base/sys base/tmp base/state "base/lib/modules/$KV"
cp /bin/busybox base/bin/
want='virtio_pci|virtio_blk|virtio_net|ext4|crc32c_generic|crc32c-intel'
for m in $(grep -E "/($want)\.ko:" "kroot/lib/modules/$KV/modules.dep" | tr -d ':' | tr ' ' '\n' | sort -u); do
	mkdir -p "base/lib/modules/$KV/$(dirname "$m")"
	cp "kroot/lib/modules/$KV/$m" "base/lib/modules/$KV/$m"
done
cp "kroot/lib/modules/$KV"/modules.{order,builtin,builtin.modinfo} "base/lib/modules/$KV/"
depmod -b "$PWD/base" "$KV"
rm -rf kroot
echo "$KV" > base/.stamp
echo "build-vm: power-cut base for kernel $KV ready in $out"
