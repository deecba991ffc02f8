#!/bin/bash
# Builds the kernel and initramfs base for the V4L2 VM test into $1
# (default build/vm): an uncompressed vmlinux from Debian's linux-image
# package (QEMU boots it through PVH, about twice as fast under TCG as the
# xz bzImage), and base/ with busybox plus the vivid and v4l2loopback
# modules. v4l2loopback is compiled from Debian's v4l2loopback-dkms source
# against the linux-headers of the same version. The result is reused while
# base/.stamp names the current kernel version.
#
# Needs: apt-get (download only), dpkg, python3, make, gcc, depmod (kmod),
# busybox-static, linux-headers-amd64 (same version as linux-image-amd64).
set -euo pipefail
out=$(realpath -m "${1:-build/vm}")
mkdir -p "$out"
cd "$out"

KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || { echo "build-vm: cannot resolve linux-image-amd64; run apt-get update" >&2; exit 1; }
KV=${KPKG#linux-image-}
if [ -f base/.stamp ] && [ "$(cat base/.stamp)" = "$KV" ] && [ -f vmlinux ]; then
	echo "build-vm: cached kernel $KV in $out"
	exit 0
fi
HDR=/usr/src/linux-headers-$KV
[ -d "$HDR" ] || { echo "build-vm: $HDR missing: apt-get install linux-headers-amd64 (must match $KPKG)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "build-vm: /bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }

if [ ! -f "kernel-$KV.deb" ]; then
	rm -f kernel-*.deb "${KPKG}"_*.deb
	apt-get download "$KPKG" >/dev/null 2>&1 || apt-get download "$KPKG"
	mv "${KPKG}"_*.deb "kernel-$KV.deb"
fi
rm -rf kroot && dpkg -x "kernel-$KV.deb" kroot
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

rm -rf lb && mkdir lb
(cd lb && { apt-get download v4l2loopback-dkms >/dev/null 2>&1 || apt-get download v4l2loopback-dkms; } && dpkg -x v4l2loopback-dkms_*.deb x)
LBSRC=$(echo "$PWD"/lb/x/usr/src/v4l2loopback-*)
make -s -C "$HDR" M="$LBSRC" modules >/dev/null

rm -rf base && mkdir -p base/bin base/dev base/proc base/sys base/tmp "base/lib/modules/$KV/extra"
cp /bin/busybox base/bin/
depmod -b "$PWD/kroot" "$KV" # the package ships no modules.dep
for m in $(grep -E '^kernel/.*/vivid\.ko:' "kroot/lib/modules/$KV/modules.dep" | tr -d ':' | tr ' ' '\n' | sort -u); do
	mkdir -p "base/lib/modules/$KV/$(dirname "$m")"
	cp "kroot/lib/modules/$KV/$m" "base/lib/modules/$KV/$m"
done
cp "$LBSRC/v4l2loopback.ko" "base/lib/modules/$KV/extra/"
cp "kroot/lib/modules/$KV"/modules.{order,builtin,builtin.modinfo} "base/lib/modules/$KV/"
depmod -b "$PWD/base" "$KV" # busybox modprobe reads this modules.dep
rm -rf kroot lb
echo "$KV" > base/.stamp
echo "build-vm: kernel $KV ready in $out"
