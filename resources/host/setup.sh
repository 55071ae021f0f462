#!/usr/bin/env bash
# One set-up for a Debian 12 host: the packages and Rust targets that building
# minivmm, its guest kernel and initramfs, its tests and its benches need. README's
# two commands and .ci/run all start here, so they cannot drift apart.
#
# Usage: resources/host/setup.sh          (as root; prints what it does, fails loudly)
#
# It installs only what is missing, refreshes apt's lists when it installs or when the
# package lists the nested harness downloads from are missing, pins qemu-utils to the
# version of the qemu-system packages when the image ships a newer backport (which
# Breaks them), prints apt's whole output when an install fails, and at the end checks
# that every command the tests and benches run is present, naming any that is not.
set -euo pipefail
log() { echo "setup: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

# Debian packages. Build: linux-source-6.1 .. lz4 (guest kernel), cpio and
# busybox-static (initramfs). Tests and benches: the rest (see README's test table).
packages=(
    linux-source-6.1 build-essential flex bison bc libelf-dev lz4 xz-utils patch
    cpio busybox-static e2fsprogs util-linux iproute2 strace dmsetup dnsmasq-base runc
    qemu-system-x86 qemu-system-arm qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
)
# Files the builds need that no command stands for: the arm64 C library's start files
# (a Recommends of gcc-aarch64-linux-gnu, which an image may not install: named above).
files=(/usr/aarch64-linux-gnu/lib/crti.o /usr/aarch64-linux-gnu/lib/Scrt1.o /usr/src/linux-source-6.1.tar.xz)
# Commands the tests, benches and scripts run, each from one of the packages above.
commands=(
    make gcc flex bison bc patch xz lz4 cpio busybox mkfs.ext4 e2fsck dumpe2fs debugfs
    ip strace dmsetup dnsmasq runc setpriv unshare losetup flock nsenter
    qemu-system-x86_64 qemu-system-aarch64 qemu-aarch64-static aarch64-linux-gnu-gcc
    apt-get dpkg-deb gzip sha256sum truncate
)
rust_targets=(x86_64-unknown-none x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl)

# Runs apt-get with the given arguments; on failure prints everything it said.
apt_run() {
    local out rc=0
    out=$(apt-get "$@" 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then
        log "apt-get $* failed (exit $rc); its full output:"
        printf '%s\n' "$out" >&2
        return "$rc"
    fi
}

installed_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | awk '$3 == "installed" {print $4}'; }
candidate_version() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'; }

if [ "$(id -u)" != 0 ]; then
    log "run me as root (apt-get install needs it), e.g. sudo $0"
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
# The nested harness downloads Debian's cloud kernel through apt's lists.
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    log "apt-get update"
    apt_run update
fi

if [ ${#missing[@]} -gt 0 ]; then
    extra=()
    # Some images ship a backported qemu-utils (10.x) that Breaks Debian 12's
    # qemu-system-common (7.2): install qemu-utils at the qemu-system packages' version
    # in the same transaction (a downgrade) so the two agree.
    have_utils=$(installed_version qemu-utils)
    want_common=$(candidate_version qemu-system-common)
    if [ -n "$have_utils" ] && [ -n "$want_common" ] && [ "$want_common" != "(none)" ] \
        && dpkg --compare-versions "$have_utils" gt "$want_common"; then
        log "qemu-utils $have_utils is newer than qemu-system-common $want_common (a backport); installing qemu-utils=$want_common beside it"
        extra=("qemu-utils=$want_common" --allow-downgrades)
    fi
    log "apt-get install ${missing[*]} ${extra[*]}"
    apt_run install -y "${missing[@]}" "${extra[@]}"
fi

if command -v rustup >/dev/null; then
    log "rustup targets: ${rust_targets[*]}; components rustfmt, clippy"
    rustup target add "${rust_targets[@]}" >/dev/null 2>&1 || rustup target add "${rust_targets[@]}"
    rustup component add rustfmt clippy >/dev/null 2>&1 || rustup component add rustfmt clippy
else
    log "rustup not found: install Rust (https://rustup.rs) and run me again"
    exit 1
fi

absent=()
for c in "${commands[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$c" >/dev/null || absent+=("$c")
done
for f in "${files[@]}"; do
    [ -e "$f" ] || absent+=("$f")
done
if [ ${#absent[@]} -gt 0 ]; then
    log "missing after install: ${absent[*]}"
    exit 1
fi
log "host ready: ${#packages[@]} packages, ${#commands[@]} commands, ${#files[@]} files, ${#rust_targets[@]} Rust targets"
