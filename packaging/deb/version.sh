#!/bin/sh
# Prints the package version, made from git so that every build of a
# commit is named alike and newer commits sort higher:
#   tag v1.2.3 on HEAD            -> 1.2.3
#   4 commits after v1.2.3        -> 1.2.3+git4.gabcdef123456
#   no tag yet                    -> 0.0~git20261202.gabcdef123456 (commit date)
#   uncommitted changes           -> any of the above + "+dirty"
# Debian versions allow [A-Za-z0-9.+~-] and must start with a digit; the
# upstream part may not contain "-" here (a native package), so the
# separators become "+".
set -eu
cd "$(dirname "$0")/../.."
dirty=""
if ! git diff --quiet HEAD -- 2>/dev/null; then dirty="+dirty"; fi
if d=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
	tag=${d%-*-g*}
	rest=${d#"$tag"-}
	n=${rest%%-*}
	hash=${rest#*-}
	v=${tag#v}
	v=$(printf %s "$v" | tr -c 'A-Za-z0-9.+~\n' '+')
	if [ "$n" = 0 ]; then
		echo "$v$dirty"
	else
		echo "$v+git$n.$hash$dirty"
	fi
else
	date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d)
	echo "0.0~git$date.g$(git rev-parse --short=12 HEAD)$dirty"
fi
