#!/bin/sh
# Pathological Dockerfiles (issue 11, point 8): wall time and peak memory of `rbuild build`
# for 2,000 ENV steps (first build and fully cached rebuild), 100 repeated `WORKDIR a`, and
# a self-doubling `ENV A=${A}${A}` (which must stop with a file:line error, not abort).
# Step cost must be linear: the target is under 2 s and under 100 MB peak RSS for 2,000 ENV.
#
#   cargo build --release && benches/pathological_dockerfiles.sh [path/to/rbuild]
#
# Needs /usr/bin/time (GNU time, for peak RSS) and /bin/busybox (Debian busybox-static).
# No root needed: these steps change only the image config and the store.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=${1:-$here/target/release/rbuild}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RBUILD_ROOT="$work/store"
"$here/testdata/busybox-rootfs.sh" | "$rbuild" import - busybox >/dev/null

mkdir -p "$work/env2000" "$work/workdir100" "$work/bomb"
{ echo "FROM busybox"; i=1; while [ $i -le 2000 ]; do echo "ENV V$i=$i"; i=$((i + 1)); done; } \
    >"$work/env2000/Dockerfile"
{ echo "FROM busybox"; i=1; while [ $i -le 100 ]; do echo "WORKDIR a"; i=$((i + 1)); done; } \
    >"$work/workdir100/Dockerfile"
{ echo "FROM busybox"; echo "ENV A=0123456789abcdef"; i=1; while [ $i -le 40 ]; do echo 'ENV A=${A}${A}'; i=$((i + 1)); done; } \
    >"$work/bomb/Dockerfile"

# Prints "<name>: <seconds> s, <peak RSS> MB, exit <code>" from GNU time's -v report.
measure() {
    name=$1
    shift
    set +e
    /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt"
    code=$?
    set -e
    awk -v name="$name" -v code="$code" '
        /Elapsed \(wall clock\)/ { n = split($NF, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
        /Maximum resident set size/ { rss = $NF / 1024 }
        END { printf "%-28s %7.2f s %7.1f MB  exit %d\n", name ":", s, rss, code }' "$work/time.txt"
}

measure "2000 ENV, first build" "$rbuild" build -q "$work/env2000"
measure "2000 ENV, cached rebuild" "$rbuild" build -q "$work/env2000"
measure "100 x WORKDIR a" "$rbuild" build -q "$work/workdir100"
measure "ENV A=\${A}\${A} x 40" "$rbuild" build -q "$work/bomb"
head -1 "$work/err.txt"
