#!/bin/sh
# Per-step cost of the default (isolated, pasta-served) network for RUN steps (issue 16,
# point 4): builds a Dockerfile of 20 `RUN true` steps with --no-cache, once with
# `--network host` and once with the default network, under hyperfine, and prints the
# per-step overhead of the isolated network: (default - host) / 20. Target: under 15 ms.
#
#   cargo build --release && benches/network_step_overhead.sh [path/to/rbuild] [runs]
#
# Needs root (or /dev/net/tun open to the user for rootless), pasta (Debian: passt),
# hyperfine and /bin/busybox (busybox-static). Debug builds work too: compare the ratio.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=${1:-$here/target/release/rbuild}
runs=${2:-10}
steps=20
command -v hyperfine >/dev/null || { echo "needs hyperfine" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RBUILD_ROOT="$work/store"
"$here/testdata/busybox-rootfs.sh" | "$rbuild" import - busybox >/dev/null
mkdir -p "$work/ctx"
{ echo "FROM busybox"; i=1; while [ $i -le $steps ]; do echo "RUN true $i"; i=$((i + 1)); done; } \
    >"$work/ctx/Dockerfile"

hyperfine --warmup 2 --runs "$runs" --export-json "$work/times.json" \
    -n host "$rbuild build -q --no-cache --network host $work/ctx" \
    -n default "$rbuild build -q --no-cache $work/ctx" >&2

python3 - "$work/times.json" "$steps" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
steps = int(sys.argv[2])
host, default = results["host"], results["default"]
per_step = lambda r: r["mean"] / steps * 1000
overhead = (default["mean"] - host["mean"]) / steps * 1000
print(f"per RUN step, host network:    {per_step(host):6.1f} ms (median build {host['median']:.3f} s)")
print(f"per RUN step, default network: {per_step(default):6.1f} ms (median build {default['median']:.3f} s)")
print(f"isolated network overhead:     {overhead:6.1f} ms per step (target < 15 ms)")
PY
