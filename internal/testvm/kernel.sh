# Sourced by the VM tests' build-vm.sh scripts (bash, set -euo pipefail,
# working directory = the output directory). Defines:
#
#   testvm_cached NAME    exits 0 if base/.stamp names the kernel that
#                         linux-image-amd64 resolves to and vmlinux exists
#   testvm_kernel         downloads that kernel package (kept as
#                         kernel-$KV.deb), unpacks it into kroot/ with a
#                         modules.dep, and writes an uncompressed vmlinux
#                         (QEMU boots it through PVH, about twice as fast
#                         under TCG as the xz bzImage)
#   testvm_base REGEX     makes base/ with busybox and the modules whose
#                         file name matches REGEX, with what they depend on
#   testvm_done NAME      indexes base/'s modules, drops kroot/, stamps base/
#
# and sets KPKG (the package) and KV (the kernel version).
# Needs: apt-get (download only), dpkg, python3, depmod (kmod),
# busybox-static.

KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || { echo "build-vm: cannot resolve linux-image-amd64; run apt-get update" >&2; exit 1; }
KV=${KPKG#linux-image-}

testvm_cached() {
	if [ -f base/.stamp ] && [ "$(cat base/.stamp)" = "$KV" ] && [ -f vmlinux ]; then
		echo "build-vm: cached $1 for kernel $KV in $PWD"
		return 0
	fi
	return 1
}

testvm_kernel() {
	[ -x /bin/busybox ] || { echo "build-vm: /bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }
	if [ ! -f "kernel-$KV.deb" ]; then
		rm -f kernel-*.deb "${KPKG}"_*.deb
		apt-get download "$KPKG" >/dev/null 2>&1 || apt-get download "$KPKG"
		mv "${KPKG}"_*.deb "kernel-$KV.deb"
	fi
	rm -rf kroot
	dpkg -x "kernel-$KV.deb" kroot
	depmod -b "$PWD/kroot" "$KV" # the package ships no modules.dep
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
}

testvm_base() {
	rm -rf base
	mkdir -p base/bin base/dev base/proc base/sys base/tmp "base/lib/modules/$KV"
	cp /bin/busybox base/bin/
	local m
	for m in $(grep -E "/($1)\.ko:" "kroot/lib/modules/$KV/modules.dep" | tr -d ':' | tr ' ' '\n' | sort -u); do
		mkdir -p "base/lib/modules/$KV/$(dirname "$m")"
		cp "kroot/lib/modules/$KV/$m" "base/lib/modules/$KV/$m"
	done
	cp "kroot/lib/modules/$KV"/modules.{order,builtin,builtin.modinfo} "base/lib/modules/$KV/"
}

testvm_done() {
	depmod -b "$PWD/base" "$KV" # busybox modprobe reads this modules.dep
	rm -rf kroot
	echo "$KV" > base/.stamp
	echo "build-vm: $1 for kernel $KV ready in $PWD"
}
