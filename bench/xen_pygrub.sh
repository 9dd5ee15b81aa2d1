#!/usr/bin/env bash
# Times `bootloader = 'pygrub'` in a Xen config, in one run: what kiln adds to
# an instance's start to find and extract the guest's kernel and initrd from
# its own disk (a partitioned disk.raw with a Debian grub.cfg), against Xen's
# own pygrub doing the same on the same disk (Debian's xen-utils-4.17,
# --output-format=simple). kiln's cost is measured as the difference between
# starting the pygrub config and the same config with kernel= and ramdisk=
# (both `kiln boot --backend qemu --detach`, no wait for the guest), so the
# instance's own set-up is not counted. Target: kiln's extraction no slower
# than pygrub's (ratio <= 1.0x).
#
# Usage: bench/xen_pygrub.sh [IMAGE-DIR]
#   IMAGE-DIR: a baked default image (default: $BENCH_IMAGE, which run-all.sh
#   bakes, else build/integration/default,
#   which `make test` bakes).
# Environment: KILN=path/to/kiln (default build/kiln), RUNS (default 5).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
kiln_source=${KILN:-$here/build/kiln}
runs=${RUNS:-5}
image=$(realpath -- "${1:-${BENCH_IMAGE:-$here/build/integration/default}}")
pygrub=/usr/lib/xen-4.17/bin/pygrub

die() { echo "xen_pygrub: $*" >&2; exit 2; }
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
[[ -f $image/disk.raw && -f $image/manifest.json ]] || die "$image: not a baked image (run make test, or give one)"
[[ -x $pygrub ]] || die "$pygrub: missing (Debian package xen-utils-4.17; scripts/install-deps.sh installs it)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-pygrub.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
cleanup() { "$kiln" destroy pygrub >/dev/null 2>&1 || true; "$kiln" destroy direct >/dev/null 2>&1 || true; rm -rf -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "xen_pygrub: interrupted" >&2; exit 130' INT TERM
kiln=$(bench_copy_kiln "$kiln_source" "$work/bin") || exit 2

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

bench_machine_before

# The disk: disk.raw without its ESP, so that the root is partition 1, with
# a grub.cfg naming the image's own kernel, as grub-mkconfig would.
read -r _ offset _ < <(bench_root_partition "$image")
disk=$work/grub.raw
cp --sparse=always -- "$image/disk.raw" "$disk"
sfdisk --quiet --delete "$disk" 1 && sfdisk --quiet --reorder "$disk"
kernel=$(debugfs -R 'ls -p /boot' "$disk?offset=$offset" 2>/dev/null | awk -F/ '$6 ~ /^vmlinuz-/ { print $6 }' | sort -V | tail -n 1)
[[ -n $kernel ]] || die "$image: no /boot/vmlinuz-* in its root filesystem"
version=${kernel#vmlinuz-}
cat >"$work/grub.cfg" <<EOF
set default="0"
menuentry 'Debian GNU/Linux' {
	linux /boot/$kernel root=/dev/xvda1 ro quiet
	initrd /boot/initrd.img-$version
}
EOF
debugfs -w -R 'mkdir /boot/grub' "$disk?offset=$offset" >/dev/null 2>&1
debugfs -w -R "write $work/grub.cfg /boot/grub/grub.cfg" "$disk?offset=$offset" >/dev/null 2>&1

cat >"$work/pygrub.cfg" <<EOF
name = 'pygrub'
bootloader = 'pygrub'
memory = 512
disk = [ '$disk,raw,xvda,rw' ]
EOF
cat >"$work/direct.cfg" <<EOF
name = 'direct'
kernel = '$image/vmlinuz'
ramdisk = '$image/initrd.img'
extra = 'root=/dev/xvda1 ro quiet'
memory = 512
disk = [ '$disk,raw,xvda,rw' ]
EOF

start_ms() {  # CONFIG NAME: milliseconds for kiln boot to return
  local t0 t1
  t0=$(now_ms)
  "$kiln" boot "$1" --backend qemu --net none --detach >/dev/null 2>"$work/err" || { cat "$work/err" >&2; die "kiln boot $1 failed"; }
  t1=$(now_ms)
  "$kiln" destroy "$2" >/dev/null
  echo $(( t1 - t0 ))
}

# Cold: the disk changed since the last boot (touched), so kiln extracts
# again, as pygrub does every time. Warm: unchanged, kiln reuses what it
# extracted.
pygrub_ms=() cold_ms=() warm_ms=() direct_ms=()
for ((i = 0; i < runs; i++)); do
  rm -rf -- "$work/out" && mkdir -p "$work/out"
  bench_settle
  t0=$(now_ms)
  "$pygrub" -q --output-format=simple --output-directory="$work/out" "$disk" >/dev/null 2>&1
  pygrub_ms+=($(( $(now_ms) - t0 )))
  touch -- "$disk"
  bench_settle
  cold_ms+=("$(start_ms "$work/pygrub.cfg" pygrub)")
  warm_ms+=("$(start_ms "$work/pygrub.cfg" pygrub)")
  direct_ms+=("$(start_ms "$work/direct.cfg" direct)")
done

theirs=$(printf '%s\n' "${pygrub_ms[@]}" | median)
cold=$(printf '%s\n' "${cold_ms[@]}" | median)
warm=$(printf '%s\n' "${warm_ms[@]}" | median)
without=$(printf '%s\n' "${direct_ms[@]}" | median)
extra() { awk -v a="$1" -v b="$without" 'BEGIN { d = a - b; printf "%.1f", d < 0 ? 0 : d }'; }
ratio() { awk -v a="$1" -v b="$theirs" 'BEGIN { printf "%.2fx", a / b }'; }
echo "disk: $(du -h --apparent-size "$disk" | cut -f1) raw, root on partition 1, kernel $kernel + its initrd ($(du -h "$image/initrd.img" | cut -f1))"
echo "Xen's pygrub, find and extract:              ${theirs} ms (median of $runs)"
echo "kiln boot, pygrub config, disk changed:      ${cold} ms"
echo "kiln boot, pygrub config, disk unchanged:    ${warm} ms"
echo "kiln boot, same config with kernel=:         ${without} ms"
bench_summary_line "xen_pygrub: kiln's kernel extraction $(extra "$cold") ms vs pygrub ${theirs} ms: $(ratio "$(extra "$cold")"); unchanged disk $(extra "$warm") ms: $(ratio "$(extra "$warm")") (target <= 1.0x)"
bench_machine_after
