#!/usr/bin/env bash
# Times turning a rootfs tarball into an ext4 image, in one run, three ways:
#   kiln          build/kiln make-fs (libext2fs, no unpacked tree)
#   tar+mke2fs    tar -x into a directory, then mke2fs -d of that directory
#   virt-make-fs  libguestfs (skipped when not installed or when it fails)
# and prints each time with its ratio to kiln's. Every image is checked with
# e2fsck -fn afterwards (outside the timings). Temporaries are removed on exit,
# Ctrl-C included.
#
# Usage: bench/tar_to_ext4.sh [TARBALL]       (default /tmp/exp/full.tar)
# Environment: KILN=path/to/kiln (default build/kiln), TMPDIR for scratch space.
set -euo pipefail

tarball=${1:-/tmp/exp/full.tar}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
kiln=${KILN:-$here/build/kiln}

die() { echo "tar_to_ext4: $*" >&2; exit 2; }
[[ -f $tarball ]] || die "$tarball: no such tarball; give one as the first argument"
command -v mke2fs >/dev/null || die "mke2fs not found (Debian package e2fsprogs)"
command -v e2fsck >/dev/null || die "e2fsck not found (Debian package e2fsprogs)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-ext4.XXXXXX")
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "tar_to_ext4: interrupted" >&2; exit 130' INT TERM

# One size for every tool: the tarball plus 30% and 64 MiB, in MiB.
tar_bytes=$(stat -c %s "$tarball")
size_mib=$(( tar_bytes * 13 / 10 / 1048576 + 64 ))

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

check() {
  if ! e2fsck -fn "$1" >"$work/fsck.log" 2>&1; then
    echo "tar_to_ext4: $2 made an image that fails e2fsck:" >&2
    tail -n 20 "$work/fsck.log" >&2
    exit 1
  fi
}

bench_machine_before
echo "tarball: $tarball ($(( tar_bytes / 1048576 )) MiB), image size ${size_mib} MiB"
# Read the tarball once so that no contender pays for a cold page cache.
cat -- "$tarball" >/dev/null

kiln_ms=""
if [[ -x $kiln ]] && "$kiln" make-fs --help >/dev/null 2>&1; then
  start=$(now_ms)
  # Without SOURCE_DATE_EPOCH make-fs skips hashing the archive for its
  # identifiers: the run measures the import, as mke2fs -d is measured.
  env -u SOURCE_DATE_EPOCH "$kiln" make-fs "$tarball" "$work/kiln.img" --size "${size_mib}M"
  kiln_ms=$(( $(now_ms) - start ))
  check "$work/kiln.img" kiln
  rm -f -- "$work/kiln.img"
else
  echo "kiln: skipped ($kiln is missing or has no make-fs subcommand; build it with make)"
fi

mkdir "$work/tree"
start=$(now_ms)
tar -xf "$tarball" -C "$work/tree" --numeric-owner --xattrs --xattrs-include='*'
untar_ms=$(( $(now_ms) - start ))
truncate -s "${size_mib}M" "$work/mke2fs.img"
start=$(now_ms)
mke2fs -q -F -t ext4 -d "$work/tree" "$work/mke2fs.img"
mke2fs_ms=$(( $(now_ms) - start ))
check "$work/mke2fs.img" "mke2fs -d"
rm -rf -- "$work/tree" "$work/mke2fs.img"
tar_mke2fs_ms=$(( untar_ms + mke2fs_ms ))

virt_ms=""
if command -v virt-make-fs >/dev/null; then
  start=$(now_ms)
  if virt-make-fs --type=ext4 --format=raw --size="${size_mib}M" "$tarball" "$work/virt.img" 2>"$work/virt.log"; then
    virt_ms=$(( $(now_ms) - start ))
    check "$work/virt.img" virt-make-fs
  else
    echo "virt-make-fs: failed here ($(grep -m 1 -i error "$work/virt.log" || tail -n 1 "$work/virt.log"))"
  fi
  rm -f -- "$work/virt.img"
else
  echo "virt-make-fs: skipped (not installed; Debian package libguestfs-tools)"
fi

line=""
if [[ -n $kiln_ms ]]; then
  line="kiln $(seconds "$kiln_ms") s"
  line+=", tar+mke2fs -d $(seconds "$tar_mke2fs_ms") s ($(bench_ratio "$tar_mke2fs_ms" "$kiln_ms"))"
  [[ -n $virt_ms ]] && line+=", virt-make-fs $(seconds "$virt_ms") s ($(bench_ratio "$virt_ms" "$kiln_ms"))"
else
  line="tar+mke2fs -d $(seconds "$tar_mke2fs_ms") s"
  [[ -n $virt_ms ]] && line+=", virt-make-fs $(seconds "$virt_ms") s"
fi
echo "tar -x $(seconds "$untar_ms") s + mke2fs -d $(seconds "$mke2fs_ms") s"
bench_summary_line "$line"
bench_machine_after
