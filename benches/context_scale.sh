#!/bin/bash
# Context at scale (issue 14, item 5): the warm rebuild of a 200,000-file context, against
# BuildKit (dockerd's, through `DOCKER_BUILDKIT=1 docker build`) and Buildah (`--layers`).
# Every tool builds the same Dockerfile (`COPY . /ctx/` of the whole context, then a RUN) once
# cold, then times:
#   warm   nothing changed                            (every step from cache)
#   touch  1,000 files touched, content unchanged     (content decides: still every step cached)
# A tool that reports a miss in a phase where everything should hit is a failure of the run,
# not a figure. rbuild's content memo (`context::digest::ContentMemo`, a stat cache as git's
# index) is what makes its warm rebuild read no context file.
#
#   cargo build --release && sudo benches/context_scale.sh [path/to/rbuild]
#
# Environment: FILES (200000), RUNS (3), WORK (a fresh dir under /var/tmp), TOOLS
# ("rbuild buildkit buildah"; add "classic" for DOCKER_BUILDKIT=0), KEEP=1 keeps WORK.
# Needs root, /bin/busybox; dockerd running for buildkit/classic; buildah for buildah.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=${1:-$here/target/release/rbuild}
files=${FILES:-200000}
runs=${RUNS:-3}
tools=${TOOLS:-rbuild buildkit buildah}
work=${WORK:-$(mktemp -d -p /var/tmp rbuild-ctx.XXXXXX)}
docker=/usr/bin/docker
tag=rbuild-bench-ctx:latest
base=localhost/rbuild-bench-busybox:latest
cleanup() {
    if printf '%s\n' $tools | grep -qx 'buildkit\|classic'; then
        "$docker" rmi -f "$tag" "$base" >/dev/null 2>&1 || true
    fi
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

ctx=$work/ctx
mkdir -p "$ctx"
"$here/testdata/busybox-rootfs.sh" >"$work/busybox.tar"
# The context: $files small files of distinct content, 1,000 per directory.
python3 - "$ctx" "$files" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "src", "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.txt" % i), "w") as f:
        f.write("file %d\n" % i)
EOF
cat >"$ctx/Dockerfile" <<EOF
FROM $base
COPY . /ctx/
RUN find /ctx -type f | wc -l > /ctx-files
CMD ["cat", "/ctx-files"]
EOF
# The touch phase's files: every 200th, 1,000 in all (listed once: `find | head` would end
# the script through pipefail when head closes the pipe).
find "$ctx/src" -type f | sort | awk 'NR % 200 == 0' >"$work/touched"
echo "context: $files files in $(find "$ctx/src" -type d | wc -l) directories ($(du -sh "$ctx" | cut -f1))" >&2

# build TOOL: one build of the context; its output goes to $work/last.log.
build() {
    case $1 in
    rbuild) RBUILD_ROOT=$work/rbuild "$rbuild" build -t "$tag" "$ctx" ;;
    buildkit) DOCKER_BUILDKIT=1 "$docker" build --network host --progress plain -t "$tag" "$ctx" ;;
    classic) DOCKER_BUILDKIT=0 "$docker" build --network host -t "$tag" "$ctx" ;;
    buildah) buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver overlay \
        build --isolation chroot --layers -t "$tag" "$ctx" ;;
    esac >"$work/last.log" 2>&1
}
# cached_steps TOOL: how many steps the last build took from cache.
cached_steps() {
    case $1 in
    rbuild | classic) grep -c 'Using cache' "$work/last.log" || true ;;
    buildkit) grep -c ' CACHED' "$work/last.log" || true ;;
    buildah) grep -c 'Using cache' "$work/last.log" || true ;;
    esac
}
import_base() {
    case $1 in
    rbuild) RBUILD_ROOT=$work/rbuild "$rbuild" import "$work/busybox.tar" "$base" >/dev/null ;;
    buildkit | classic) "$docker" rmi -f "$tag" >/dev/null 2>&1 || true
        "$docker" builder prune -af >/dev/null 2>&1 || true
        "$docker" import "$work/busybox.tar" "$base" >/dev/null ;;
    buildah) printf 'FROM scratch\nADD busybox.tar /\n' >"$work/Base.Dockerfile"
        buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver overlay \
            build --isolation chroot -f "$work/Base.Dockerfile" -t "$base" "$work" >/dev/null 2>&1 ;;
    esac
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf 'tool\tphase\tmedian_s\truns\n'
for tool in $tools; do
    import_base "$tool"
    start=$(date +%s.%N)
    build "$tool" || { cat "$work/last.log" >&2; echo "$tool: cold build failed" >&2; exit 1; }
    printf '%s\tcold\t%.3f\t1\n' "$tool" "$(echo "$(date +%s.%N) - $start" | bc)"
    for phase in warm touch; do
        times=()
        for _ in $(seq "$runs"); do
            if [ "$phase" = touch ]; then
                xargs touch <"$work/touched"
            fi
            sync
            start=$(date +%s.%N)
            build "$tool" || { cat "$work/last.log" >&2; echo "$tool $phase: build failed" >&2; exit 1; }
            times+=("$(echo "$(date +%s.%N) - $start" | bc)")
            hits=$(cached_steps "$tool")
            if [ "$hits" -lt 2 ]; then
                cat "$work/last.log" >&2
                echo "$tool $phase: expected COPY and RUN from cache, saw $hits cached steps" >&2
                exit 1
            fi
        done
        printf '%s\t%s\t%.3f\t%s\n' "$tool" "$phase" "$(printf '%s\n' "${times[@]}" | median)" "$runs"
    done
done
