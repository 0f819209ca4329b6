#!/bin/sh
# Per-step cost of the default (isolated, pasta-served) network for RUN steps (issue 16,
# point 4): builds a Dockerfile of 20 `RUN true` steps with --no-cache, with `--network host`
# and with the default network, runs interleaved (so load drift on a shared machine hits both
# alike), and prints medians and minima per step and the overhead of the isolated network:
# (default - host) / 20. Target: under 15 ms. With a second binary (e.g. main's), both are
# measured the same way, interleaved, for a before/after figure.
#
#   cargo build --release && benches/network_step_overhead.sh [RBUILD] [RUNS] [BEFORE_RBUILD]
#
# Needs root (or /dev/net/tun open to the user for rootless), pasta (Debian: passt) and
# /bin/busybox (busybox-static). Debug builds work too: compare the overheads, not the totals.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=${1:-$here/target/release/rbuild}
runs=${2:-12}
before=${3:-}
steps=20
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RBUILD_ROOT="$work/store"
"$here/testdata/busybox-rootfs.sh" | "$rbuild" import - busybox >/dev/null
mkdir -p "$work/ctx"
{ echo "FROM busybox"; i=1; while [ $i -le $steps ]; do echo "RUN true $i"; i=$((i + 1)); done; } \
    >"$work/ctx/Dockerfile"

variants="after"
[ -n "$before" ] && variants="before after"
# One untimed build per binary and network warms the page cache.
for v in $variants; do
    bin=$rbuild
    [ "$v" = before ] && bin=$before
    for net in host default; do "$bin" build -q --no-cache --network $net "$work/ctx" >/dev/null; done
done
run=1
while [ $run -le "$runs" ]; do
    for v in $variants; do
        bin=$rbuild
        [ "$v" = before ] && bin=$before
        for net in host default; do
            start=$(date +%s%N)
            "$bin" build -q --no-cache --network $net "$work/ctx" >/dev/null
            end=$(date +%s%N)
            echo "$v $net $(((end - start) / 1000))" >>"$work/times"
        done
    done
    run=$((run + 1))
done

# Median and minimum of variant $1, network $2, in microseconds.
stat() {
    grep "^$1 $2 " "$work/times" | awk '{print $3}' | sort -n |
        awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)], a[1]}'
}
for v in $variants; do
    set -- $(stat "$v" host) $(stat "$v" default)
    awk -v v="$v" -v n="$steps" -v hm="$1" -v hmin="$2" -v dm="$3" -v dmin="$4" 'BEGIN {
        printf "%-6s per RUN step: host %5.1f ms, default %5.1f ms (medians; minima %.1f / %.1f)\n",
            v, hm / n / 1000, dm / n / 1000, hmin / n / 1000, dmin / n / 1000
        printf "%-6s isolated network overhead: %5.1f ms per step (median), %5.1f ms (minima); target < 15 ms\n",
            v, (dm - hm) / n / 1000, (dmin - hmin) / n / 1000
    }'
done
