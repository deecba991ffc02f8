#!/bin/bash
# Builds the kernel and initramfs base for the V4L2 VM test into $1
# (default build/vm): Debian's kernel as an uncompressed vmlinux and base/
# with busybox plus the vivid and v4l2loopback modules
# (internal/testvm/kernel.sh fetches the kernel and picks modules).
# v4l2loopback is compiled from Debian's v4l2loopback-dkms source against
# the linux-headers of the same version. Reused while base/.stamp names the
# current kernel version.
#
# Needs, beyond kernel.sh's list: make, gcc, linux-headers-amd64 (same
# version as linux-image-amd64).
set -euo pipefail
lib=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../../internal/testvm/kernel.sh")
out=$(realpath -m "${1:-build/vm}")
mkdir -p "$out"
cd "$out"
. "$lib"
testvm_cached "V4L2 VM" && exit 0
HDR=/usr/src/linux-headers-$KV
[ -d "$HDR" ] || { echo "build-vm: $HDR missing: apt-get install linux-headers-amd64 (must match $KPKG)" >&2; exit 1; }
testvm_kernel

rm -rf lb && mkdir lb
(cd lb && { apt-get download v4l2loopback-dkms >/dev/null 2>&1 || apt-get download v4l2loopback-dkms; } && dpkg -x v4l2loopback-dkms_*.deb x)
LBSRC=$(echo "$PWD"/lb/x/usr/src/v4l2loopback-*)
make -s -C "$HDR" M="$LBSRC" modules >/dev/null

testvm_base 'vivid'
mkdir -p "base/lib/modules/$KV/extra"
cp "$LBSRC/v4l2loopback.ko" "base/lib/modules/$KV/extra/"
rm -rf lb
testvm_done "V4L2 VM"
