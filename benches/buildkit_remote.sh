#!/bin/bash
# BuildKit through rbuild (issue 15): the same Dockerfile solved by dockerd's embedded BuildKit
# via `rbuild build --builder docker://` (rbuild's LLB, its session serving the context, the
# image loaded back into rbuild's store) and via `DOCKER_BUILDKIT=1 docker build --network
# host` (docker's client and BuildKit's Dockerfile frontend), cold and warm, timed with
# hyperfine. Target: rbuild no slower than docker's client in every row.
#
# Scenarios: s1 (the bench suite's s1-small: small steps, a RUN, a COPY), s4 (s4-multistage:
# two 1 s stages of 2,000 files each, an unused stage, COPY --from both) and apt (a Debian
# bookworm minbase image, `apt-get install` of two small packages from the Debian mirror; the
# RUN uses the host network in both tools).
#
# cold: BuildKit has none of the build's ops cached (each run gets a fresh ENV nonce after
# every FROM, which changes every RUN's cache key; the base images stay), after one untimed
# cold run of each tool (so neither pays for what the previous scenario left dockerd doing).
# warm: the same Dockerfile again, everything cached.
#
#   cargo build [--release] && sudo benches/buildkit_remote.sh [path/to/rbuild]
#
# Env: RUNS (timed runs per row, default 5; the apt rows take min(RUNS, 3) cold runs),
# SCENARIOS (default "s1 s4 apt"), DEBIAN_TAR (the cached minbase rootfs tarball, made with
# debootstrap when missing), KEEP=1 keeps the work dir.
# Needs root, a running dockerd with Debian's client at /usr/bin/docker (docker.io 20.10),
# hyperfine, busybox-static; debootstrap and the Debian mirror for the apt scenario.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=$(realpath "${1:-$here/target/release/rbuild}")
docker=/usr/bin/docker
runs=${RUNS:-5}
apt_runs=$((runs < 3 ? runs : 3))
scenarios=${SCENARIOS:-s1 s4 apt}
debian_tar=${DEBIAN_TAR:-/var/tmp/rbuild-bench-debian-bookworm-minbase.tar}
work=$(mktemp -d /var/tmp/rbuild-bk-bench.XXXXXX)
export RBUILD_ROOT=$work/store
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# Base images, the same bytes in dockerd and in rbuild's store.
"$here/testdata/busybox-rootfs.sh" >"$work/busybox.tar"
$docker import "$work/busybox.tar" rbuild-bench/busybox:latest >/dev/null
"$rbuild" import "$work/busybox.tar" rbuild-bench/busybox:latest >/dev/null
if [[ " $scenarios " == *" apt "* ]]; then
    if [ ! -s "$debian_tar" ]; then
        rootfs=$(mktemp -d /var/tmp/rbuild-bench-debootstrap.XXXXXX)
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
        tar -C "$rootfs" --numeric-owner -cf "$debian_tar.part" .
        mv "$debian_tar.part" "$debian_tar"
        rm -rf "$rootfs"
    fi
    $docker import "$debian_tar" rbuild-bench/debian:bookworm >/dev/null
    "$rbuild" import "$debian_tar" rbuild-bench/debian:bookworm >/dev/null
fi

# One context per scenario and tool, so each tool's cold runs get nonces of their own.
write_context() { # scenario dir
    mkdir -p "$2"
    case $1 in
    s1)
        mkdir -p "$2/app"
        printf 'listen=80\nroot=/var/www/html\n' >"$2/app/app.conf"
        echo '<html><body>rbuild bench</body></html>' >"$2/app/page.html"
        printf '#!/bin/sh\nexec httpd -f -p 80 -h /var/www/html\n' >"$2/app/start.sh"
        cat >"$2/Dockerfile" <<'EOF'
FROM rbuild-bench/busybox:latest
ENV BENCH_NONCE=0
MAINTAINER rbuild bench "bench@rbuild.invalid"
ENV REFRESHED_AT 2016-11-09
RUN mkdir -p /var/www/html /etc/app && \
    echo 'Hi, I am in your container' > /var/www/html/index.html && \
    seq 1 1000 > /etc/app/numbers && \
    date -u -d @0 > /etc/app/built
COPY app/ /opt/app/
WORKDIR /opt/app
EXPOSE 80
CMD ["/bin/sh", "/opt/app/start.sh"]
EOF
        ;;
    s4)
        cat >"$2/Dockerfile" <<'EOF'
FROM rbuild-bench/busybox:latest AS left
ENV BENCH_NONCE=0
RUN sleep 1 && mkdir /out && for i in $(seq 1 2000); do echo "left $i" > /out/l$i; done

FROM rbuild-bench/busybox:latest AS right
ENV BENCH_NONCE=0
RUN sleep 1 && mkdir /out && for i in $(seq 1 2000); do echo "right $i" > /out/r$i; done

FROM rbuild-bench/busybox:latest AS unused
ENV BENCH_NONCE=0
RUN sleep 3 && echo "this stage is never needed" > /unused

FROM rbuild-bench/busybox:latest
ENV BENCH_NONCE=0
COPY --from=left /out/ /left/
COPY --from=right /out/ /right/
CMD ["/bin/ls", "/left", "/right"]
EOF
        ;;
    apt)
        cat >"$2/Dockerfile" <<'EOF'
FROM rbuild-bench/debian:bookworm
ENV BENCH_NONCE=0
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends jq file >/dev/null \
    && rm -rf /var/lib/apt/lists/*
CMD ["jq", "--version"]
EOF
        ;;
    esac
}

# The nonce hyperfine's --prepare sets before each cold run.
renonce() { echo "sed -i \"s/^ENV BENCH_NONCE=.*/ENV BENCH_NONCE=\$(date +%s%N)/\" $1/Dockerfile"; }

results=$work/results.md
: >"$results"
for scenario in $scenarios; do
    for tool in rbuild docker; do write_context "$scenario" "$work/$tool-$scenario"; done
    r=$work/rbuild-$scenario
    d=$work/docker-$scenario
    rb="$rbuild build -q --network host --builder docker:// -t bench-$scenario $r"
    db="DOCKER_BUILDKIT=1 $docker build -q --network host -t rbuild-bench-out-$scenario $d"
    cold_runs=$runs
    [ "$scenario" = apt ] && cold_runs=$apt_runs
    echo "== $scenario: cold ($cold_runs runs)" >&2
    hyperfine -w 1 -r "$cold_runs" --export-markdown "$work/$scenario-cold.md" \
        -n "rbuild --builder docker:// ($scenario cold)" --prepare "$(renonce "$r")" "$rb" \
        -n "docker build, BuildKit ($scenario cold)" --prepare "$(renonce "$d")" "$db" >&2
    echo "== $scenario: warm ($runs runs)" >&2
    hyperfine -w 1 -r "$runs" --export-markdown "$work/$scenario-warm.md" \
        -n "rbuild --builder docker:// ($scenario warm)" "$rb" \
        -n "docker build, BuildKit ($scenario warm)" "$db" >&2
    for phase in cold warm; do tail -n +3 "$work/$scenario-$phase.md" >>"$results"; done
done

echo "| Command | Mean [s] | Min [s] | Max [s] | Relative |"
echo "|:---|---:|---:|---:|---:|"
cat "$results"
for scenario in $scenarios; do $docker rmi -f "rbuild-bench-out-$scenario" >/dev/null 2>&1 || true; done
$docker rmi rbuild-bench/busybox:latest rbuild-bench/debian:bookworm >/dev/null 2>&1 || true
