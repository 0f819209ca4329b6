#!/bin/bash
# A CI job in an unprivileged container (issue 14, item 1): rbuild inside `docker run` with
# Docker's default seccomp profile and no added capabilities (where `--isolation auto` picks
# the chroot-snapshot mode), as root and as uid 1000, builds a Debian apt-get scenario on an
# empty store; the same context is built on the host (namespaces mode). Prints each build's
# time and image ID; the run fails when an ID differs from the host's.
#
#   cargo build --release && sudo benches/ci_container.sh [path/to/rbuild]
#
# The apt step removes what records the time of the build (apt and dpkg logs, caches) so that
# two builds are equal; SOURCE_DATE_EPOCH=0 on every side clamps the timestamps.
# Needs root, dockerd with /usr/bin/docker, proot, busybox-static, debootstrap (the Debian base
# is made once and kept in $DEBIAN_TAR) and the Debian mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rbuild=$(realpath "${1:-$here/target/release/rbuild}")
docker=/usr/bin/docker
debian_tar=${DEBIAN_TAR:-/var/tmp/rbuild-debian-bookworm.tar}
work=${WORK:-$(mktemp -d -p /var/tmp rbuild-ci.XXXXXX)}
image=rbuild-ci-bench:$$
trap '$docker rmi -f $image >/dev/null 2>&1 || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
if [ ! -f "$debian_tar" ]; then
    debootstrap --variant=minbase bookworm "$work/debian" http://deb.debian.org/debian >"$work/debootstrap.log"
    tar -C "$work/debian" --numeric-owner -cf "$debian_tar.part" . && mv "$debian_tar.part" "$debian_tar"
    rm -rf "$work/debian"
fi

mkdir -p "$work/ctx/app"
echo 'echo hello from the app' >"$work/ctx/app/run.sh"
cat >"$work/ctx/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/log/* /var/cache/apt/* /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old /var/lib/dpkg/*-old
COPY app/ /app/
RUN chmod 0755 /app/run.sh && mkdir -p /data && echo ready > /data/state && rm /etc/issue.net
WORKDIR /app
CMD ["sh", "/app/run.sh"]
EOF
# (No `useradd` step: in the chroot-snapshot mode a chown made by a RUN is lost, and useradd
# leaves /etc/.pwd.lock opened for writing but unchanged, which overlayfs copies up; both are
# documented limits of that mode, and such a Dockerfile gives another image ID there.)

# The image rbuild runs in: busybox, rbuild, proot and the libraries they load.
root=$work/image
mkdir -p "$root"/{bin,work,home/u,tmp,usr/local/bin,usr/bin}
cp /bin/busybox "$root/bin/busybox"
for applet in sh cat env id; do ln -s busybox "$root/bin/$applet"; done
for pair in "$rbuild:usr/local/bin/rbuild" "/usr/bin/proot:usr/bin/proot"; do
    bin=${pair%%:*}
    cp "$bin" "$root/${pair#*:}"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
chmod 1777 "$root/tmp" "$root/home/u"
tar -C "$root" -cf "$work/image.tar" .
$docker import "$work/image.tar" "$image" >/dev/null

seconds() { echo "$2 - $1" | bc; }
export SOURCE_DATE_EPOCH=0
# Host: namespaces mode on an empty store.
start=$(date +%s.%N)
RBUILD_ROOT=$work/host "$rbuild" import - debian:bookworm <"$debian_tar" >/dev/null
RBUILD_ROOT=$work/host "$rbuild" build --isolation namespaces --iidfile "$work/host.iid" "$work/ctx" >"$work/host.log" 2>&1 ||
    { cat "$work/host.log"; exit 1; }
host_iid=$(cat "$work/host.iid")
echo "host (namespaces), empty store: $(seconds "$start" "$(date +%s.%N)") s, $host_iid"

status=0
for user in 0:0 1000:1000; do
    # KEEP=1 also keeps each container's store (in $work/store-<uid>) to look into.
    keep_store=()
    if [ -n "${KEEP:-}" ]; then
        install -d -o "${user%%:*}" "$work/store-${user%%:*}"
        keep_store=(-v "$work/store-${user%%:*}:/home/u/store")
    fi
    start=$(date +%s.%N)
    out=$($docker run --rm --network host --user "$user" -e HOME=/home/u -e RBUILD_ROOT=/home/u/store "${keep_store[@]}" \
        -e SOURCE_DATE_EPOCH=0 -v "$debian_tar:/work/debian.tar:ro" -v "$work/ctx:/work/ctx:ro" "$image" \
        /bin/sh -c 'rbuild import - debian:bookworm </work/debian.tar >/dev/null &&
            rbuild build --isolation auto --iidfile /home/u/iid /work/ctx && echo "iid=$(cat /home/u/iid)"' 2>&1) ||
        { echo "$out"; exit 1; }
    iid=$(echo "$out" | sed -n 's/^iid=//p')
    mode=$(echo "$out" | grep -m1 '^\[isolation\]' || echo '[isolation] usual')
    echo "docker run --user $user (default seccomp, no caps), empty store: $(seconds "$start" "$(date +%s.%N)") s, $iid; $mode"
    if [ "$iid" != "$host_iid" ]; then
        echo "  image ID differs from the host build's" >&2
        status=1
    fi
done
exit $status
