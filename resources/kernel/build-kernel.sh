#!/usr/bin/env bash
# Builds minivmm's x86_64 guest kernel (ELF vmlinux and bzImage) from Debian's
# linux-source-6.1 package: `make tinyconfig` + x86_64.config + the patches beside
# this script. Output goes to a cache directory outside the repository, keyed by a
# hash of every input, so a rerun with unchanged inputs returns at once.
#
# Usage: resources/kernel/build-kernel.sh      (prints the output directory last)
# Env:   MINIVMM_CACHE_DIR (default: $XDG_CACHE_HOME/minivmm or ~/.cache/minivmm)
#        LINUX_SOURCE_TARBALL (default: /usr/src/linux-source-6.1.tar.xz)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tarball=${LINUX_SOURCE_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
cache=${MINIVMM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minivmm}

if [ ! -f "$tarball" ]; then
    echo "build-kernel.sh: $tarball not found; install it with: apt-get install linux-source-6.1" >&2
    exit 1
fi

# The key covers the config fragment, the patches, the source version and the recipe
# version below (bump it when the build steps change what comes out).
recipe=1
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s "$tarball")
key=$( (cat "$here/x86_64.config" "$here"/*.patch; echo "$src_version recipe=$recipe") | sha256sum | cut -c1-16)
out="$cache/kernel-x86_64-$key"

if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
    echo "build-kernel.sh: cached kernel in $out" >&2
    echo "$out"
    exit 0
fi

mkdir -p "$cache"
# One build at a time per cache: a second caller waits, then finds the result.
exec 9>"$cache/.kernel-x86_64.lock"
flock 9
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
    echo "build-kernel.sh: cached kernel in $out" >&2
    echo "$out"
    exit 0
fi
work=$(mktemp -d "$cache/build-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "build-kernel.sh: building Linux ($src_version) in $work" >&2
tar -C "$work" -xf "$tarball"
cd "$work"/linux-source-6.1
for p in "$here"/*.patch; do
    patch -p1 --quiet < "$p"
done

make -s tinyconfig
scripts/kconfig/merge_config.sh -m .config "$here/x86_64.config" >/dev/null
make -s olddefconfig

# Fail loudly if Kconfig dropped an option we asked for (a missing dependency).
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            if ! grep -qx "$line" .config; then
                echo "build-kernel.sh: option not in final .config: $line" >&2
                missing=1
            fi ;;
        "# CONFIG_"*" is not set")
            opt=${line#\# }; opt=${opt%% *}
            if grep -q "^$opt=" .config; then
                echo "build-kernel.sh: option should be off: $opt" >&2
                missing=1
            fi ;;
    esac
done < "$here/x86_64.config"
[ "$missing" = 0 ] || exit 1

make -s -j"$(nproc)" vmlinux bzImage >&2

mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp arch/x86/boot/bzImage "$out.tmp/bzImage"
cp .config "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "build-kernel.sh: kernel ready in $out" >&2
echo "$out"
