#!/usr/bin/env bash
# Issue 16's benchmark point: the shared harness's s1-small (and s5, when that scenario
# exists) with rbuild before and after a change, runs interleaved, plus each binary with
# `--network host` to show what the isolated network costs. Prints the harness's summary
# (median/min/max seconds per binary, scenario and phase).
#
#   benches/issue16_bench.sh BEFORE_RBUILD AFTER_RBUILD [RUNS]
#
# e.g. BEFORE=main's target/release/rbuild, AFTER=this branch's. Needs the harness set up
# (../shared/bench/setup.sh) and root (or /dev/net/tun open to the user) for the default
# network. Use release builds on a quiet machine; the harness state is in $BENCH_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_SRC:-$here/../shared/bench}
before=${1:?usage: $0 BEFORE_RBUILD AFTER_RBUILD [RUNS]}
after=${2:?usage: $0 BEFORE_RBUILD AFTER_RBUILD [RUNS]}
runs=${3:-5}
scenarios=("$bench/scenarios/s1-small")
if [[ -d "$bench/scenarios/s5" ]] || compgen -G "$bench/scenarios/s5-*" >/dev/null; then
  scenarios+=("$(compgen -G "$bench/scenarios/s5*" | head -n1)")
else
  echo "note: no s5 scenario in $bench/scenarios; timing s1-small only" >&2
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((run = 1; run <= runs; run++)); do
  for variant in before after before-host after-host; do
    case $variant in
      before*) binary=$before ;;
      *) binary=$after ;;
    esac
    flags=""
    [[ $variant == *-host ]] && flags="--network host"
    NO_HEADER=1 RUN_START=$run TOOL_LABEL="rbuild-$variant" RBUILD="$binary" RBUILD_EXTRA_FLAGS="$flags" \
      RBUILD_ROOT_BASE="${BENCH_DIR:-${TMPDIR:-/tmp}/rbuild-bench}/rbuild-root-$variant" \
      "$bench/run.sh" -n 1 -t rbuild "${scenarios[@]}" >>"$out"
  done
done
"$bench/summarize.sh" "$out"
