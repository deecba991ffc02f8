#!/usr/bin/env bash
# Runs the Pi Zero/1 build of kvscamd on an emulated ARM1176 (the Pi Zero's
# CPU) and checks that it starts, that it is a static pure-Go build for
# GOARM=6 (no loader or libc, whose code could be ARMv7), and that
# "kvscamd mux" writes the same bytes as the host build for every clip
# given.
# Usage: test-armv6.sh HOST_KVSCAMD ARMV6_KVSCAMD QEMU_ARM CLIP...
set -euo pipefail
host=$1 arm=$2 qemu=$3
shift 3
run() { "$qemu" -cpu arm1176 "$arm" "$@"; }

out=$(run version)
echo "$out"
grep -q '^kvscamd ' <<<"$out" || { echo "FAIL: kvscamd version printed no version line" >&2; exit 1; }
grep -q ' linux/arm$' <<<"$out" || { echo "FAIL: not a linux/arm build" >&2; exit 1; }

info=$(go version -m "$arm")
for want in 'CGO_ENABLED=0' 'GOARCH=arm' 'GOARM=6'; do
	grep -q "build[[:space:]]*$want\$" <<<"$info" || { echo "FAIL: $arm was not built with $want" >&2; exit 1; }
done
# Static: no program interpreter and no shared libraries, so nothing but
# the Go code (GOARM=6) runs.
headers=$(readelf -lW "$arm")
if grep -q 'INTERP' <<<"$headers" || grep -q 'DYNAMIC' <<<"$headers"; then
	echo "FAIL: $arm is dynamically linked:" >&2
	grep -e INTERP -e DYNAMIC <<<"$headers" >&2
	exit 1
fi
readelf -hW "$arm" | grep -q 'Machine:[[:space:]]*ARM$' || { echo "FAIL: $arm is not a 32-bit ARM ELF file" >&2; exit 1; }
echo "static linux/arm GOARM=6 binary"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for clip in "$@"; do
	args=(mux -i "$root/testdata/$clip.h264" -fps 30 -start 2026-01-02T15:04:05Z)
	"$host" "${args[@]}" -o "$tmp/$clip.host.mkv" >/dev/null
	run "${args[@]}" -o "$tmp/$clip.armv6.mkv"
	if ! cmp "$tmp/$clip.host.mkv" "$tmp/$clip.armv6.mkv"; then
		echo "FAIL: $clip: the ARMv6 build muxed other bytes than the host build" >&2
		exit 1
	fi
	echo "$clip: $(stat -c %s "$tmp/$clip.armv6.mkv") bytes, identical to the host build ($(sha256sum <"$tmp/$clip.armv6.mkv" | cut -c1-16))"
done
