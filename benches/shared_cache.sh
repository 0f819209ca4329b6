#!/bin/bash
# Shared build cache (issue 14, item 2): a CI job on a fresh runner. Store A builds and exports
# its cache to a local registry; an empty store then builds the same context without a cache
# (cold) and with `--cache-from` (what a second CI job does); Buildah does the same with its
# own `--cache-to/--cache-from` when it is installed. Three scenarios: s4 (the multi-stage
# benchmark scenario: two 1 s stages producing 2,000 files each), a "compile" with a
# `RUN --mount=type=cache` whose warm cache (cache-mounts=true) skips the slow part, and "apt":
# a Debian bookworm base (debootstrap --variant=minbase, made once and kept in $DEBIAN_TAR)
# whose RUN apt-get installs curl from the Debian mirror, then COPYs the app.
#
#   cargo build [--release] && sudo benches/shared_cache.sh [path/to/rbuild]
#
# Needs root, docker-registry (Debian package docker-registry), /bin/busybox, debootstrap and the
# Debian mirror for "apt"; buildah optional. SCENARIOS="s4 compile apt" picks scenarios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=${1:-$here/target/release/rbuild}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
until (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done

RBUILD_ROOT=$work/a "$here/testdata/busybox-rootfs.sh" | RBUILD_ROOT=$work/a "$rbuild" import - busybox >/dev/null
RBUILD_ROOT=$work/a "$rbuild" push busybox "$reg/busybox:latest" >/dev/null
scenarios=${SCENARIOS:-s4 compile apt}
debian_tar=${DEBIAN_TAR:-/var/tmp/rbuild-debian-bookworm.tar}
if [[ " $scenarios " == *" apt "* ]]; then
    if [ ! -f "$debian_tar" ]; then
        debootstrap --variant=minbase bookworm "$work/debian" http://deb.debian.org/debian >"$work/debootstrap.log"
        tar -C "$work/debian" --numeric-owner -cf "$debian_tar.part" . && mv "$debian_tar.part" "$debian_tar"
        rm -rf "$work/debian"
    fi
    RBUILD_ROOT=$work/a "$rbuild" import "$debian_tar" debian:bookworm >/dev/null
    RBUILD_ROOT=$work/a "$rbuild" push debian:bookworm "$reg/debian:bookworm" >/dev/null
    mkdir -p "$work/apt/app"
    echo 'echo hello from the app' >"$work/apt/app/run.sh"
    cat >"$work/apt/Dockerfile" <<EOF
FROM $reg/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
COPY app/ /app/
CMD ["sh", "/app/run.sh"]
EOF
fi

mkdir -p "$work/s4" "$work/compile/src"
cat >"$work/s4/Dockerfile" <<EOF
FROM $reg/busybox AS left
RUN sleep 1 && mkdir /out && for i in \$(seq 1 2000); do echo "left \$i" > /out/l\$i; done
FROM $reg/busybox AS right
RUN sleep 1 && mkdir /out && for i in \$(seq 1 2000); do echo "right \$i" > /out/r\$i; done
FROM $reg/busybox
COPY --from=left /out/ /left/
COPY --from=right /out/ /right/
CMD ["/bin/ls", "/left", "/right"]
EOF
# A "compiler" that takes 2 s unless its cache mount already holds the object file.
cat >"$work/compile/Dockerfile" <<EOF
FROM $reg/busybox
COPY src/ /src/
RUN --mount=type=cache,target=/cache sh -c 'test -f /cache/obj || { sleep 2; echo obj > /cache/obj; }; cp /cache/obj /built'
EOF

seconds() { # prints the wall time of "$@" in seconds; a failed build ends the run with its log
    local start end
    start=$(date +%s.%N)
    if ! "$@" >"$work/last.log" 2>&1; then
        cat "$work/last.log" >&2
        echo "failed: $*" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
# misses: how many steps of the last build did not come from cache (rbuild's classic output).
misses() { grep -c '^ ---> Running in' "$work/last.log" || true; }

have_buildah=$(command -v buildah || true)
buildah_in() { buildah --root "$work/buildah-$1" --runroot "$work/buildah-run-$1" "${@:2}"; }
for scenario in $scenarios; do
    ctx=$work/$scenario
    cache="type=registry,ref=$reg/cache-$scenario:x"
    # Job 1 (store A) exports the cache.
    RBUILD_ROOT=$work/a-$scenario "$rbuild" build --cache-to "$cache,mode=max,cache-mounts=true" "$ctx" >/dev/null
    if [ -n "$have_buildah" ]; then
        buildah_in "a-$scenario" build --layers --tls-verify=false --cache-to "$reg/bcache-$scenario" -t x "$ctx" >/dev/null 2>&1
    fi
    # The compile scenario's source changes between jobs: its COPY and RUN run again, the
    # cache mount (carried by the cache) is warm.
    if [ "$scenario" = compile ]; then echo "change $RANDOM" >"$ctx/src/main.c"; fi
    cold=$(RBUILD_ROOT=$work/cold-$scenario seconds "$rbuild" build "$ctx")
    warm=$(RBUILD_ROOT=$work/warm-$scenario seconds "$rbuild" build --cache-from "$cache" "$ctx")
    echo "$scenario: rbuild, empty store, no cache: ${cold} s; with --cache-from: ${warm} s ($(misses) RUN steps ran)"
    if [ -n "$have_buildah" ]; then
        # Buildah keeps RUN --mount=type=cache directories host-wide (not under --root), so
        # its "compile" runs share one warm cache mount whatever the flags.
        bcold=$(seconds buildah_in "cold-$scenario" build --layers --tls-verify=false -t x "$ctx")
        bwarm=$(seconds buildah_in "warm-$scenario" build --layers --tls-verify=false --cache-from "$reg/bcache-$scenario" -t x "$ctx")
        echo "$scenario: buildah, empty store, no cache: ${bcold} s; with --cache-from: ${bwarm} s"
    fi
done
