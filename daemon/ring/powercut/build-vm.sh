#!/bin/bash
# Builds the power-cut test VM into $1 (default build/powercut): an
# uncompressed vmlinux from Debian's linux-image package (QEMU boots it
# through PVH, about twice as fast under TCG as the xz bzImage), and base/
# with busybox plus the virtio (PCI, block, net) and ext4 modules. The same
# kernel as the V4L2 VM test (drivers/v4l2/vmtest), built apart from it so
# that both tests can run at the same time. Reused while base/.stamp names
# the current kernel version.
#
# Needs: apt-get (download only), dpkg, python3, depmod (kmod),
# busybox-static.
set -euo pipefail
out=$(realpath -m "${1:-build/powercut}")
mkdir -p "$out"
cd "$out"
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || { echo "build-vm: cannot resolve linux-image-amd64; run apt-get update" >&2; exit 1; }
KV=${KPKG#linux-image-}
if [ -f base/.stamp ] && [ "$(cat base/.stamp)" = "$KV" ] && [ -f vmlinux ]; then
	echo "build-vm: cached power-cut VM for kernel $KV in $out"
	exit 0
fi
[ -x /bin/busybox ] || { echo "build-vm: /bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }
if [ ! -f "kernel-$KV.deb" ]; then
	rm -f kernel-*.deb "${KPKG}"_*.deb
	apt-get download "$KPKG" >/dev/null 2>&1 || apt-get download "$KPKG"
	mv "${KPKG}"_*.deb "kernel-$KV.deb"
fi
rm -rf kroot base
dpkg -x "kernel-$KV.deb" kroot
python3 - <<'PY'
import lzma, os
boot = 'kroot/boot/'
d = open(boot + [f for f in os.listdir(boot) if f.startswith('vmlinuz')][0], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')
if i < 0:
    raise SystemExit('build-vm: vmlinuz is not xz-compressed; cannot extract vmlinux')
open('vmlinux.tmp', 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:]))
os.rename('vmlinux.tmp', 'vmlinux')
PY
depmod -b "$PWD/kroot" "$KV" # the package ships no modules.dep
mkdir -p base/bin base/dev base/proc base/sys base/tmp base/state "base/lib/modules/$KV"
cp /bin/busybox base/bin/
want='virtio_pci|virtio_blk|virtio_net|ext4|crc32c_generic|crc32c-intel'
for m in $(grep -E "/($want)\.ko:" "kroot/lib/modules/$KV/modules.dep" | tr -d ':' | tr ' ' '\n' | sort -u); do
	mkdir -p "base/lib/modules/$KV/$(dirname "$m")"
	cp "kroot/lib/modules/$KV/$m" "base/lib/modules/$KV/$m"
done
cp "kroot/lib/modules/$KV"/modules.{order,builtin,builtin.modinfo} "base/lib/modules/$KV/"
depmod -b "$PWD/base" "$KV" # busybox modprobe reads this modules.dep
rm -rf kroot
echo "$KV" > base/.stamp
echo "build-vm: power-cut VM for kernel $KV ready in $out"
