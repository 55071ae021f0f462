#!/usr/bin/env bash
# minivmm's nested test harness: runs minivmm inside an emulated x86 host, where
# guest user space and secondary vCPUs work even when this host's /dev/kvm cannot.
#
#   L0 (this host) --qemu TCG, -cpu EPYC (emulated SVM)--> L1 (Debian cloud kernel,
#   kvm-amd) --minivmm--> L2 (resources/ guest kernel + busybox initramfs)
#
# Usage: tests/nested/harness.sh SCENARIO.sh OUTPUT.log
# SCENARIO.sh runs inside L1 with the helpers of l1-lib.sh (run_l2 ...); everything
# L1 prints, L2 consoles included, lands in OUTPUT.log. Artifacts are cached in
# $MINIVMM_CACHE_DIR (default ~/.cache/minivmm).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
scenario=${1:?usage: harness.sh SCENARIO.sh OUTPUT.log}
output=${2:?usage: harness.sh SCENARIO.sh OUTPUT.log}
cache=${MINIVMM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minivmm}
timeout_s=${MINIVMM_NESTED_TIMEOUT:-420}
log() { echo "harness: $*" >&2; }

# --- L1 kernel and KVM modules, from Debian's cloud kernel package ----------------
# Prints the package linux-image-cloud-amd64 depends on; nothing when apt's lists do
# not know it (apt-cache fails then; under pipefail that must not end the script).
resolve_l1() { { apt-cache depends linux-image-cloud-amd64 2>/dev/null || true; } | awk '/Depends: linux-image-/ {print $2; exit}'; }
l1_pkg=$(resolve_l1)
# (v2: with dm-mod, for the disk-fault scenario's device-mapper error target; v3:
# with dm-delay, for the stalled-disk scenario; v4: with veth and the bridge, for a
# CNI-style network namespace in the containerd scenario.)
if [ -z "$l1_pkg" ] || [ ! -f "$cache/l1-v4-$l1_pkg/vmlinuz" ]; then
    # Not cached: refresh apt's lists first (they may be stale, naming a package the
    # mirror no longer has), then resolve and download with apt's errors shown.
    log "apt-get update (to fetch Debian's cloud kernel)"
    apt-get update -qq
    l1_pkg=$(resolve_l1)
fi
[ -n "$l1_pkg" ] || { log "cannot resolve linux-image-cloud-amd64 from apt's lists"; exit 1; }
l1_dir="$cache/l1-v4-$l1_pkg"
if [ ! -f "$l1_dir/vmlinuz" ]; then
    log "fetching $l1_pkg"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -q "$l1_pkg" && dpkg-deb -x ./*.deb x)
    mkdir -p "$l1_dir.tmp"
    cp "$tmp"/x/boot/vmlinuz-* "$l1_dir.tmp/vmlinuz"
    for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd drivers/net/tun drivers/block/loop drivers/md/dm-mod drivers/md/dm-delay drivers/net/veth net/llc/llc net/802/stp net/bridge/bridge; do
        f=$(find "$tmp"/x/lib/modules -path "*/kernel/$m.ko*" | head -n1)
        [ -n "$f" ] || { log "module $m not in $l1_pkg"; exit 1; }
        cp "$f" "$l1_dir.tmp/"
    done
    rm -rf "$tmp" "$l1_dir"
    mv "$l1_dir.tmp" "$l1_dir"
fi

# --- L2 payload: minivmm (static), guest kernel, initramfs ---------------------------
log "building static minivmm (x86_64-unknown-linux-musl)"
(cd "$repo" && CARGO_TARGET_DIR="$repo/target/nested" cargo build --quiet --release \
    --target x86_64-unknown-linux-musl --bin minivmm)
minivmm="$repo/target/nested/x86_64-unknown-linux-musl/release/minivmm"
kernel_dir=${MINIVMM_L2_KERNEL_DIR:-$("$repo/resources/kernel/build-kernel.sh")}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib,l2}
cp /bin/busybox "$stage/bin/busybox"
cp "$minivmm" "$stage/bin/minivmm"
cp "$l1_dir"/*.ko* "$stage/lib/"
for m in irqbypass kvm kvm-amd tun loop dm-mod dm-delay veth llc stp bridge; do
    (cd "$stage/lib" && ls $m.ko*) >> "$stage/lib/modules.list"
done
cp "$kernel_dir/vmlinux" "$kernel_dir/bzImage" "$stage/l2/"
# Debian's own cloud kernel (the L1 kernel) as a stock L2, as users run it: a
# distribution config pays costs (RTC probe, console volume) that ours hides.
cp "$l1_dir/vmlinuz" "$stage/l2/stock-vmlinuz"
# The guest's random-I/O tool (static, musl) for the disk benches.
(cd "$repo/resources/guest/iobench" && CARGO_TARGET_DIR="$repo/target/nested" cargo build \
    --quiet --release --target x86_64-unknown-linux-musl)
# examples/sandbox.rs and exec_bench.rs (static): the library's exec API from programs
# in L1 (the nested test, benches/exec.rs).
(cd "$repo" && CARGO_TARGET_DIR="$repo/target/nested" cargo build --quiet --release \
    --target x86_64-unknown-linux-musl --example sandbox --example exec_bench --example snapshot_clones)
cp "$repo/target/nested/x86_64-unknown-linux-musl/release/examples/sandbox" \
    "$repo/target/nested/x86_64-unknown-linux-musl/release/examples/exec_bench" \
    "$repo/target/nested/x86_64-unknown-linux-musl/release/examples/snapshot_clones" "$stage/bin/"
# The guest agent (static, musl), for `minivmm exec` into L2 guests.
(cd "$repo" && CARGO_TARGET_DIR="$repo/target/nested" cargo build --quiet --release \
    --target x86_64-unknown-linux-musl -p minivmm-agent)
export GUEST_TOOLS="$repo/target/nested/x86_64-unknown-linux-musl/release/iobench $repo/target/nested/x86_64-unknown-linux-musl/release/minivmm-agent"
"$repo/resources/guest/build-initramfs.sh" "$stage/l2/initramfs.cpio" >/dev/null
"$repo/resources/guest/build-initramfs.sh" "$stage/l2/initramfs.cpio.gz" --gzip >/dev/null
# Disk images for virtio-blk scenarios: ext4, raw, and a patterned read-only one.
truncate -s 32M "$stage/l2/disk.ext4"
mkfs.ext4 -q -F "$stage/l2/disk.ext4"
truncate -s 8M "$stage/l2/raw.img"
yes minivmm 2>/dev/null | head -c 1M > "$stage/l2/ro.img" || true
# dmsetup and the libraries it links, for a device-mapper error target in L1.
pack_binary() {
    cp "$1" "$stage/bin/$(basename "$1")"
    for lib in $(ldd "$1" | awk '/=>/ {print $3} /^\t\// {print $1}'); do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}
pack_binary "$(command -v dmsetup || echo /usr/sbin/dmsetup)"
# util-linux's script: a pseudo-terminal for `minivmm exec -t` (busybox has none).
pack_binary "$(command -v script)"
# With MINIVMM_NESTED_QEMU=1, QEMU (and the libraries it links) goes into L1 too, as a
# peer to compare minivmm with under the same emulated host.
if [ "${MINIVMM_NESTED_QEMU:-0}" = 1 ]; then
    pack_binary "$(command -v qemu-system-x86_64)"
    mkdir -p "$stage/usr/share/qemu"
    for rom in bios-microvm.bin qboot.rom pvh.bin linuxboot_dma.bin; do
        cp -L "/usr/share/qemu/$rom" "$stage/usr/share/qemu/$rom"
    done
fi
# With MINIVMM_NESTED_FIRECRACKER=PATH (a Firecracker binary the user has), it goes
# into L1 as /bin/firecracker, for side-by-side boots in the same emulated host.
if [ -n "${MINIVMM_NESTED_FIRECRACKER:-}" ]; then
    pack_binary "$MINIVMM_NESTED_FIRECRACKER"
    packed="$stage/bin/$(basename "$MINIVMM_NESTED_FIRECRACKER")"
    [ "$packed" = "$stage/bin/firecracker" ] || mv "$packed" "$stage/bin/firecracker"
fi
# With MINIVMM_NESTED_RUNC=1, runc and a busybox OCI bundle (/oci, whose process
# prints CONTAINER-READY) go into L1, to compare a container's start with an L2 boot
# under the same emulation.
if [ "${MINIVMM_NESTED_RUNC:-0}" = 1 ]; then
    pack_binary "$(command -v runc)"
    mkdir -p "$stage/oci/rootfs/bin"
    cp /bin/busybox "$stage/oci/rootfs/bin/busybox"
    (cd "$stage/oci" && runc spec)
    sed -i -e 's/"terminal": true/"terminal": false/' \
        -e 's|^\(\s*\)"sh"$|\1"/bin/busybox", "echo", "CONTAINER-READY"|' "$stage/oci/config.json"
    grep -q CONTAINER-READY "$stage/oci/config.json" || { log "cannot edit runc's spec"; exit 1; }
fi
# With MINIVMM_NESTED_CONTAINERD=1, Debian's containerd (containerd, ctr, the runc v2
# shim), runc, minivmm-oci (static) and a busybox image (a docker archive built here,
# docs/oci-notes.md) go into L1: containerd running containers through minivmm-oci.
if [ "${MINIVMM_NESTED_CONTAINERD:-0}" = 1 ]; then
    ctrd_dir="$cache/containerd-$(apt-cache policy containerd 2>/dev/null | awk '/Candidate:/ {print $2; exit}' | tr -c 'A-Za-z0-9.+~\n-' _)"
    if [ ! -x "$ctrd_dir/bin/containerd" ]; then
        log "fetching Debian's containerd package"
        tmp=$(mktemp -d)
        chmod 755 "$tmp"
        if ! (cd "$tmp" && apt-get download -q containerd); then
            apt-get update -qq
            (cd "$tmp" && apt-get download -q containerd)
        fi
        (cd "$tmp" && dpkg-deb -x ./containerd_*.deb x)
        mkdir -p "$ctrd_dir.tmp/bin"
        for b in containerd ctr containerd-shim-runc-v2; do
            cp "$tmp/x/usr/bin/$b" "$ctrd_dir.tmp/bin/$b"
        done
        rm -rf "$tmp" "$ctrd_dir"
        mv "$ctrd_dir.tmp" "$ctrd_dir"
    fi
    for b in containerd ctr containerd-shim-runc-v2; do
        pack_binary "$ctrd_dir/bin/$b"
    done
    pack_binary "$(command -v runc)"
    # iproute2's ip (as ip2; busybox's cannot make veth pairs or named netns).
    pack_binary "$(command -v ip)"
    mv "$stage/bin/ip" "$stage/bin/ip2"
    (cd "$repo" && CARGO_TARGET_DIR="$repo/target/nested" cargo build --quiet --release \
        --target x86_64-unknown-linux-musl --bin minivmm-oci)
    cp "$repo/target/nested/x86_64-unknown-linux-musl/release/minivmm-oci" "$stage/bin/"
    img=$(mktemp -d)
    mkdir -p "$img/r/bin" "$img/o" "$stage/oci-image"
    cp /bin/busybox "$img/r/bin/busybox"
    for a in sh echo sleep cat ls hostname id mount true; do ln -s busybox "$img/r/bin/$a"; done
    tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$img/r" -cf "$img/o/layer.tar" .
    diff_id=$(sha256sum "$img/o/layer.tar" | cut -d' ' -f1)
    printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" > "$img/o/config.json"
    printf '[{"Config":"config.json","RepoTags":["minivmm/busybox:latest"],"Layers":["layer.tar"]}]' > "$img/o/manifest.json"
    tar -C "$img/o" -cf "$stage/oci-image/busybox.tar" manifest.json config.json layer.tar
    rm -rf "$img"
fi
install -m 0755 "$here/l1-init" "$stage/init"
cp "$here/l1-lib.sh" "$stage/l1-lib.sh"
cp "$scenario" "$stage/scenario.sh"
mknod -m 600 "$stage/dev/console" c 5 1
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) > "$stage.cpio"
trap 'rm -rf "$stage" "$stage.cpio"' EXIT

# --- Boot L1 under TCG ----------------------------------------------------------------
log "booting L1 ($l1_pkg) under qemu TCG; scenario $(basename "$scenario")"
start=$(date +%s.%N)
set +e
# An L1 that makes no progress within the limit, whose kernel panics before the
# scenario ends (qemu then exits 0: -no-reboot), or whose kernel reports a CPU stuck
# for 100 s or more (a soft lockup that does not clear: it is ended then, not at the
# limit) is booted again, loudly, at most three times (MINIVMM_L1_BOOTS=N: N-1
# times), as many retries as the Rust side allows a run of any kind (run_harness);
# its output is kept beside OUTPUT.log (OUTPUT.log.hung, .hung2, ...). All three
# happen on TCG's emulated SVM while L1's KVM runs an L2: hangs, kernel panics (a
# kernel stack overflow in its page-fault handler with a bad GS base) and lockups in a
# vCPU thread's KVM_RUN, seen in about one CI run in three on 2026-12-03's machines;
# on 2026-12-04's, hangs in 3 of the 8 L1 boots of one CI run's tests (each caught
# by the heartbeat below), with the code of several sessions.
l1_stuck() { grep -qE "soft lockup - CPU#[0-9]+ stuck for ([1-9][0-9]{2,})s" "$output"; }
# L1's /init writes its uptime to its second serial port (the file $beat) every 5 s.
# An L1 whose kernel hung goes quiet there long before the limit: a CI run on
# 2026-12-03 lost a whole 420 s boot of the stock-kernel scenario (30 s when it works)
# whose L2 watchdog, due after 90 s, never printed: L1 itself had stopped. Quiet means
# no beat for 90 s once beats came (an L1 without a second UART never beats, and
# is left to the limit).
beat="$output.beat"
l1_silent() { [ -s "$beat" ] && [ $(( $(date +%s) - $(stat -c %Y "$beat") )) -ge 90 ]; }
beat_age() { [ -s "$beat" ] && echo "$(( $(date +%s) - $(stat -c %Y "$beat") )) s ago" || echo never; }
boots=${MINIVMM_L1_BOOTS:-4}
for attempt in $(seq 1 "$boots"); do
    rm -f "$beat"
    booted=$(date +%s)
    timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu EPYC -smp 2 -m 2048 \
        -display none -monitor none -serial stdio -serial "file:$beat" -no-reboot \
        -kernel "$l1_dir/vmlinuz" -initrd "$stage.cpio" \
        -append "console=ttyS0 panic=-1 quiet loglevel=3" < /dev/null > "$output" 2>&1 &
    qemu=$!
    stuck=0
    silent=0
    while kill -0 "$qemu" 2>/dev/null; do
        sleep 5
        if l1_stuck; then
            stuck=1
            kill "$qemu" 2>/dev/null
            break
        fi
        if l1_silent; then
            silent=1
            kill "$qemu" 2>/dev/null
            break
        fi
    done
    wait "$qemu"
    rc=$?
    last=$([ "$attempt" = "$boots" ] && echo 1 || echo 0)
    hung="$output.hung$([ "$attempt" -gt 1 ] && echo "$attempt")"
    if [ "$stuck" = 1 ] && [ "$last" = 0 ]; then
        log "RETRY: L1 reported a CPU stuck for 100 s or more (its output is kept in $hung); booting it again"
        mv "$output" "$hung"
        continue
    fi
    if [ "$silent" = 1 ] && [ "$last" = 0 ]; then
        log "RETRY: L1's heartbeat stopped (last beat $(beat_age), $(( $(date +%s) - booted )) s after boot): its kernel hung (its output is kept in $hung); booting it again"
        echo "harness: L1's heartbeat stopped (last beat $(beat_age)): its kernel hung" >> "$output"
        mv "$output" "$hung"
        continue
    fi
    if [ "$rc" = 124 ] && [ "$last" = 0 ]; then
        log "RETRY: L1 did not finish within ${timeout_s} s, its heartbeat alive (last beat $(beat_age)): the scenario was too slow or an L2 stuck (its output is kept in $hung); booting it again"
        echo "harness: L1 did not finish within ${timeout_s} s; its heartbeat was alive (last beat $(beat_age))" >> "$output"
        mv "$output" "$hung"
        continue
    fi
    if [ "$rc" = 0 ] && ! grep -q "=== L1 DONE" "$output" && [ "$last" = 0 ]; then
        log "RETRY: L1 ended before its scenario did (kernel panic? its output is kept in $hung); booting it again"
        mv "$output" "$hung"
        continue
    fi
    if [ "$silent" = 1 ]; then
        log "L1's heartbeat stopped (last beat $(beat_age)): its kernel hung"
        echo "harness: L1's heartbeat stopped (last beat $(beat_age)): its kernel hung" >> "$output"
    elif [ "$rc" = 124 ]; then
        echo "harness: L1 did not finish within ${timeout_s} s; its heartbeat was alive (last beat $(beat_age))" >> "$output"
    fi
    { [ "$stuck" = 1 ] || [ "$silent" = 1 ]; } && rc=124
    break
done
set -e
end=$(date +%s.%N)
log "L1 finished with status $rc after $(echo "$end - $start" | bc) s"
exit $rc
