#!/usr/bin/env bash
# Writes a busybox root filesystem tarball to stdout, built from the host's static busybox
# (Debian package busybox-static): /bin/busybox, one symlink per applet, /etc/passwd and
# /etc/group with root, nobody and app. Owners are numeric and mtimes fixed, so the same
# busybox binary always gives the same tarball (and the same image ID once imported).
#
#   testdata/busybox-rootfs.sh | rbuild import - busybox
set -euo pipefail
busybox="${BUSYBOX:-/bin/busybox}"
if [ ! -x "$busybox" ]; then
  echo "busybox-rootfs.sh: $busybox not found: apt-get install busybox-static" >&2
  exit 1
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home/app,var,proc,sys,dev}
chmod 755 "$root"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  [ -e "$root/$applet" ] && continue
  up="$(printf '%s' "$applet" | sed 's|[^/]*/|../|g; s|[^/]*$||')"
  ln -s "${up}bin/busybox" "$root/$applet"
done < <("$busybox" --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\n' >"$root/etc/group"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$root" -cf - .
