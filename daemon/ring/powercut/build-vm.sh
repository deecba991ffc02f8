#!/bin/bash
# Builds the power-cut test VM into $1 (default build/powercut): Debian's
# kernel as an uncompressed vmlinux and base/ with busybox plus the virtio
# (PCI, block, net) and ext4 modules (internal/testvm/kernel.sh does the
# work). The same kernel as the V4L2 VM test (drivers/v4l2/vmtest), built
# apart from it so that both tests can run at the same time. Reused while
# base/.stamp names the current kernel version.
set -euo pipefail
lib=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../../internal/testvm/kernel.sh")
out=$(realpath -m "${1:-build/powercut}")
mkdir -p "$out"
cd "$out"
. "$lib"
testvm_cached "power-cut VM" && exit 0
testvm_kernel
testvm_base 'virtio_pci|virtio_blk|virtio_net|ext4|crc32c_generic|crc32c-intel'
mkdir -p base/state
testvm_done "power-cut VM"
