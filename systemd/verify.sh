#!/usr/bin/env bash
# Checks the systemd files without a running systemd: the unit parses
# cleanly and stays hardened, and the sysusers and tmpfiles snippets create
# the user, its video group membership and the directories.
# Usage: systemd/verify.sh BINARY   (BINARY stands in for /usr/bin/kvscamd)
set -euo pipefail

bin=$(realpath "${1:?usage: $0 path/to/kvscamd}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Exposure score x 10 that the unit must stay at or below.
max_exposure=20

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
	command -v "$tool" >/dev/null || { echo "verify: $tool missing; apt-get install systemd" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "verify: FAIL: $*" >&2; exit 1; }

# systemd-analyze verify needs ExecStart= to exist, and exits 0 on parse
# warnings, so any output at all counts as a failure.
sed "s|/usr/bin/kvscamd|$bin|g" "$here/kvscamd.service" > "$work/kvscamd.service"
out=$(systemd-analyze verify --man=no "$work/kvscamd.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
echo "verify: kvscamd.service parses cleanly"

systemd-analyze security --offline=yes --threshold="$max_exposure" "$work/kvscamd.service" > "$work/security" 2>&1 ||
	fail "exposure above $((max_exposure / 10)).$((max_exposure % 10)): $(tail -n 1 "$work/security")"
echo "verify: $(grep -o 'Overall exposure level.*' "$work/security")"

root="$work/root"
mkdir -p "$root/etc"
printf 'root:x:0:0::/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\n' > "$root/etc/group"
systemd-sysusers --root="$root" "$here/kvscamd.sysusers.conf" > "$work/sysusers" 2>&1 || fail "systemd-sysusers: $(cat "$work/sysusers")"
grep -q '^kvscamd:x:[0-9]*:[0-9]*:[^:]*:/var/lib/kvscamd:' "$root/etc/passwd" || fail "sysusers did not create user kvscamd"
grep -Eq '^video:x:44:(.*,)?kvscamd(,|$)' "$root/etc/group" || fail "sysusers did not add kvscamd to group video"
echo "verify: sysusers creates kvscamd in group video"

systemd-tmpfiles --root="$root" --create "$here/kvscamd.tmpfiles.conf" > "$work/tmpfiles" 2>&1 || fail "systemd-tmpfiles: $(cat "$work/tmpfiles")"
uid=$(awk -F: '$1 == "kvscamd" {print $3}' "$root/etc/passwd")
for d in /var/lib/kvscamd /etc/kvscamd /etc/kvscamd/certs; do
	[ -d "$root$d" ] || fail "tmpfiles did not create $d"
	[ "$(stat -c %a "$root$d")" = 750 ] || fail "$d has mode $(stat -c %a "$root$d"), want 750"
done
[ "$(stat -c %u "$root/var/lib/kvscamd")" = "$uid" ] || fail "/var/lib/kvscamd is not owned by kvscamd"
echo "verify: tmpfiles creates the state and configuration directories"
