#!/usr/bin/env bash
# The cost of emulation: the default recipe baked for arm64 (qemu-user,
# binfmt_misc) against amd64 (native) on this host, in one run, each
#   cold   no cached stage, the package cache empty: every package fetched
#          and every maintainer script run (kiln bake into a fresh cache)
#   warm   the same bake again with a hostname change: the stages cached
# and, for the cold bakes, against the same mmdebstrap call (no cache, into a
# directory) plus mke2fs -t ext4 -d, which is what a user would otherwise run.
# Prints each time, arm64/amd64 cold and warm, and kiln/(mmdebstrap + mke2fs)
# per architecture. A cold arm64 bake took kiln 12.5 minutes on two cores
# without KVM; plain mmdebstrap makes the initramfs twice under emulation
# (kiln did too before, and took 29 minutes beside other work): set
# ARCHES=amd64 to skip them, or FLOOR=0 to skip the mmdebstrap runs.
#
# Checked outside the timings: e2fsck -fn of every image, and each image's
# manifest names its architecture.
#
# Usage: sudo bench/foreign_bake.sh
# Environment: KILN=path/to/kiln (default build/kiln), ARCHES (default
#   "amd64 arm64"), FLOOR=0, TMPDIR for scratch space (about 6 GiB),
#   BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
kiln=${KILN:-$here/build/kiln}
recipe=$here/recipes/debian-12-minimal.toml
read -r -a arches <<<"${ARCHES:-amd64 arm64}"
epoch=${SOURCE_DATE_EPOCH:-1700000000}

die() { echo "foreign_bake: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: mmdebstrap and binfmt_misc need it here"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
for tool in mmdebstrap mke2fs e2fsck unshare; do command -v "$tool" >/dev/null || die "$tool not found"; done
kernel_package() {
  case $1 in amd64) echo linux-image-amd64 ;; arm64) echo linux-image-arm64 ;;
             i386) echo linux-image-686 ;; armhf) echo linux-image-armmp-lpae ;; *) return 1 ;; esac
}
for arch in "${arches[@]}"; do
  kernel_package "$arch" >/dev/null || die "ARCHES: $arch: expected amd64, arm64, i386 or armhf"
done

mirror=$(bench_debian_mirror)
tool_env=(LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH="$epoch")

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-foreign.XXXXXX")
cleanup() { rm -rf --one-file-system -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "foreign_bake: interrupted" >&2; exit 130' INT TERM
kiln=$(bench_copy_kiln "$kiln" "$work/bin") || exit 2

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
fsck_or_fail() {
  e2fsck -fn "$1" >"$work/fsck.log" 2>&1 && return 0
  echo "foreign_bake: $2 made an image that fails e2fsck:" >&2
  tail -n 20 "$work/fsck.log" >&2
  exit 1
}

declare -A cold warm floor
bake() {  # ARCH OUT [--set ...]: prints the milliseconds
  local arch=$1 out=$2 start
  shift 2
  bench_settle
  start=$(now_ms)
  SOURCE_DATE_EPOCH=$epoch "$kiln" bake "$recipe" --set "image.arch=\"$arch\"" "$@" -o "$out" \
    --cache "$work/cache-$arch" >"$work/bake.log" 2>&1 || { tail -n 20 "$work/bake.log" >&2; exit 1; }
  echo $(( $(now_ms) - start ))
}

echo "recipe: recipes/debian-12-minimal.toml, mirror $mirror, SOURCE_DATE_EPOCH=$epoch"
bench_machine_before
for arch in "${arches[@]}"; do
  echo "$arch"
  cold[$arch]=$(bake "$arch" "$work/$arch")
  fsck_or_fail "$(bench_root_fs "$work/$arch")" "kiln ($arch)"
  made=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['image']['architecture'])" \
         "$work/$arch/manifest.json")
  [[ $made == "$arch" ]] || { echo "foreign_bake: the $arch bake made an image for $made" >&2; exit 1; }
  echo "  kiln cold $(seconds "${cold[$arch]}") s"
  warm[$arch]=$(bake "$arch" "$work/$arch-warm" --set 'customize.hostname="warm"')
  echo "  kiln warm (hostname changed) $(seconds "${warm[$arch]}") s"
  if [[ ${FLOOR:-1} != 0 ]]; then
    read -r _ _ root_bytes < <(bench_root_partition "$work/$arch")
    packages=systemd-sysv,udev,dbus,openssh-server,iproute2,iputils-ping,systemd-resolved,$(kernel_package "$arch")
    [[ $arch == amd64 ]] || packages+=,systemd-boot-efi
    bench_settle
    start=$(now_ms)
    unshare --mount --propagation private env "${tool_env[@]}" TMPDIR="$work" mmdebstrap -q --variant=minbase \
      "--architectures=$arch" --components=main '--aptopt=Acquire::Retries "3"' "--include=$packages" \
      --format=directory bookworm "$work/tree" "$mirror"
    truncate -s "$root_bytes" "$work/floor.img"
    mke2fs -q -F -t ext4 -L root -d "$work/tree" "$work/floor.img"
    floor[$arch]=$(( $(now_ms) - start ))
    fsck_or_fail "$work/floor.img" "mmdebstrap + mke2fs -d ($arch)"
    rm -rf --one-file-system -- "$work/tree" "$work/floor.img"
    echo "  mmdebstrap + mke2fs -d $(seconds "${floor[$arch]}") s"
  fi
  rm -rf --one-file-system -- "$work/$arch" "$work/$arch-warm" "$work/cache-$arch"
done

bench_machine_after
for arch in "${arches[@]}"; do
  line="$arch: cold $(seconds "${cold[$arch]}") s, warm $(seconds "${warm[$arch]}") s"
  [[ -n ${floor[$arch]:-} ]] &&
    line+=", mmdebstrap + mke2fs -d $(seconds "${floor[$arch]}") s, kiln cold/that $(bench_ratio "${cold[$arch]}" "${floor[$arch]}")"
  bench_summary_line "$line"
done
for arch in "${arches[@]}"; do
  [[ $arch == amd64 || -z ${cold[amd64]:-} ]] && continue
  bench_summary_line "$arch/amd64: cold $(bench_ratio "${cold[$arch]}" "${cold[amd64]}"), warm $(bench_ratio "${warm[$arch]}" "${warm[amd64]}")"
done
