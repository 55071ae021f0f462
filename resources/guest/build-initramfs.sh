#!/usr/bin/env bash
# Builds minivmm's guest initramfs: Debian's busybox-static and resources/guest/init,
# plus the static programs named in $GUEST_TOOLS (space-separated paths) in /bin.
# Usage: build-initramfs.sh OUTPUT.cpio [--gzip]     (needs root for /dev/console)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-initramfs.sh OUTPUT [--gzip]}
busybox=${BUSYBOX:-/bin/busybox}
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "build-initramfs.sh: need a static busybox at $busybox (apt-get install busybox-static)" >&2
    exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp}
cp "$busybox" "$stage/bin/busybox"
for tool in ${GUEST_TOOLS:-}; do
    install -m 0755 "$tool" "$stage/bin/$(basename "$tool")"
done
install -m 0755 "$here/init" "$stage/init"
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 666 "$stage/dev/null" c 1 3
(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) > "$out.tmp"
if [ "${2:-}" = "--gzip" ]; then
    gzip -9 -n -c "$out.tmp" > "$out"
    rm -f "$out.tmp"
else
    mv "$out.tmp" "$out"
fi
echo "$out"
