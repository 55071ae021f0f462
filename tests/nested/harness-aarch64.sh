#!/usr/bin/env bash
# The arm64 twin of harness.sh: minivmm for aarch64 inside an emulated arm64 host.
#
#   L0 (this x86 host) --qemu-system-aarch64 TCG, virt with virtualization=on (EL2),
#   GICv3, -cpu max--> L1 (Debian's arm64 kernel, KVM built in, VHE) --minivmm-->
#   L2 (the same Debian Image + a busybox initramfs with the virtio modules)
#
# Usage: tests/nested/harness-aarch64.sh SCENARIO.sh OUTPUT.log
# SCENARIO.sh runs inside L1 with l1-lib.sh's helpers, exactly as with harness.sh.
# MINIVMM_A64_GIC=2 gives L1 a GICv2 (with virtualization extensions) instead of a
# GICv3, so minivmm must fall back to a GICv2 for its guest.
# Artifacts are cached in $MINIVMM_CACHE_DIR (default ~/.cache/minivmm).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
scenario=${1:?usage: harness-aarch64.sh SCENARIO.sh OUTPUT.log}
output=${2:?usage: harness-aarch64.sh SCENARIO.sh OUTPUT.log}
cache=${MINIVMM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minivmm}
timeout_s=${MINIVMM_NESTED_TIMEOUT:-1200}
log() { echo "harness-aarch64: $*" >&2; }

# --- Debian's arm64 kernel (L1 and L2) and busybox, from apt ------------------------
# Prints the package linux-image-arm64:arm64 depends on; nothing when apt's lists do
# not know it (apt-cache fails then; under pipefail that must not end the script).
resolve_a64() { { apt-cache depends linux-image-arm64:arm64 2>/dev/null || true; } | awk '/Depends: linux-image-6/ {print $2; exit}'; }
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
pkg=$(resolve_a64)
# (v3: with the vsock, virtio-rng, fuse and virtiofs modules.)
if [ -z "$pkg" ] || [ ! -f "$cache/a64-v3-$pkg/Image" ]; then
    # Not cached: refresh apt's lists first (they may be stale or lack arm64), then
    # resolve and download with apt's errors shown.
    log "apt-get update (to fetch Debian's arm64 kernel)"
    apt-get update -qq
    pkg=$(resolve_a64)
fi
[ -n "$pkg" ] || { log "cannot resolve linux-image-arm64:arm64 from apt's lists"; exit 1; }
a64="$cache/a64-v3-$pkg"
if [ ! -f "$a64/Image" ]; then
    log "fetching $pkg and busybox-static:arm64"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -q "$pkg" busybox-static:arm64 \
        && for d in ./*.deb; do dpkg-deb -x "$d" x; done)
    mkdir -p "$a64.tmp/mod"
    cp "$tmp"/x/boot/vmlinuz-* "$a64.tmp/Image"
    cp "$tmp"/x/bin/busybox "$a64.tmp/busybox"
    # Load order matters: L1 needs tun and loop; L2 the virtio transport and drivers.
    for m in drivers/net/tun drivers/block/loop drivers/virtio/virtio_mmio \
        drivers/block/virtio_blk net/core/failover drivers/net/net_failover drivers/net/virtio_net \
        net/vmw_vsock/vsock net/vmw_vsock/vmw_vsock_virtio_transport_common \
        net/vmw_vsock/vmw_vsock_virtio_transport drivers/char/hw_random/virtio-rng \
        fs/fuse/fuse fs/fuse/virtiofs; do
        f=$(find "$tmp"/x/lib/modules -path "*/kernel/$m.ko*" | head -n1)
        [ -n "$f" ] && cp "$f" "$a64.tmp/mod/"
    done
    rm -rf "$tmp" "$a64"
    mv "$a64.tmp" "$a64"
fi

# --- minivmm for aarch64, static ----------------------------------------------------
log "building static minivmm (aarch64-unknown-linux-musl)"
(cd "$repo" && CARGO_TARGET_DIR="$repo/target/nested" cargo build --quiet --release \
    --target aarch64-unknown-linux-musl --bin minivmm)
minivmm="$repo/target/nested/aarch64-unknown-linux-musl/release/minivmm"

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$stage.cpio"' EXIT
# L2 initramfs: busybox, the guest /init, and the virtio modules it loads in order.
l2=$(mktemp -d)
mkdir -p "$l2"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$a64/busybox" "$l2/bin/busybox"
install -m 0755 "$repo/resources/guest/init" "$l2/init"
i=1
for m in virtio_mmio virtio_blk failover net_failover virtio_net vsock \
    vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport virtio-rng fuse virtiofs; do
    [ -f "$a64/mod/$m.ko" ] && cp "$a64/mod/$m.ko" "$l2/lib/modules/$(printf %02d $i)-$m.ko"
    i=$((i + 1))
done
# The guest agent (static, musl), for `minivmm exec` into the L2 guest.
(cd "$repo" && CARGO_TARGET_DIR="$repo/target/nested" cargo build --quiet --release \
    --target aarch64-unknown-linux-musl -p minivmm-agent)
install -m 0755 "$repo/target/nested/aarch64-unknown-linux-musl/release/minivmm-agent" "$l2/bin/"
mknod -m 600 "$l2/dev/console" c 5 1
mknod -m 666 "$l2/dev/null" c 1 3
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib,l2}
(cd "$l2" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) > "$stage/l2/initramfs.cpio"
rm -rf "$l2"
# L1: busybox, minivmm, tun and loop, the L2 kernel and initramfs, disk images.
cp "$a64/busybox" "$stage/bin/busybox"
cp "$minivmm" "$stage/bin/minivmm"
: > "$stage/lib/modules.list"
for m in tun loop; do
    if [ -f "$a64/mod/$m.ko" ]; then
        cp "$a64/mod/$m.ko" "$stage/lib/"
        echo "$m.ko" >> "$stage/lib/modules.list"
    fi
done
cp "$a64/Image" "$stage/l2/Image"
truncate -s 8M "$stage/l2/raw.img"
yes minivmm 2>/dev/null | head -c 1M > "$stage/l2/ro.img" || true
install -m 0755 "$here/l1-init" "$stage/init"
cp "$here/l1-lib.sh" "$stage/l1-lib.sh"
cp "$scenario" "$stage/scenario.sh"
mknod -m 600 "$stage/dev/console" c 5 1
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) > "$stage.cpio"

# --- Boot L1 under TCG --------------------------------------------------------------
gic=${MINIVMM_A64_GIC:-3}
log "booting L1 ($pkg, GICv$gic) under qemu-system-aarch64 TCG; scenario $(basename "$scenario")"
start=$(date +%s.%N)
set +e
timeout "$timeout_s" qemu-system-aarch64 -M "virt,virtualization=on,gic-version=$gic" -cpu max \
    -smp 2 -m 2048 -display none -monitor none -serial stdio -no-reboot \
    -kernel "$a64/Image" -initrd "$stage.cpio" \
    -append "console=ttyAMA0 panic=-1 quiet loglevel=3" < /dev/null > "$output" 2>&1
rc=$?
set -e
end=$(date +%s.%N)
log "L1 finished with status $rc after $(echo "$end - $start" | bc) s"
exit $rc
