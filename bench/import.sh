#!/usr/bin/env bash
# Times taking a vendor's qcow2 (the default image's 2 GiB disk, converted
# untimed) to something that boots with its own kernel, in one run, two ways:
#   kiln    kiln import vendor.qcow2 (convert, find the root and the kernel,
#           install kiln's agent, write the manifest)
#   manual  what a user does without it: qemu-img convert -O raw, then
#           virt-get-kernel (libguestfs) for the kernel and initramfs a
#           direct boot needs. Where qemu cannot use KVM, libguestfs runs with
#           LIBGUESTFS_BACKEND_SETTINGS=force_tcg; when it cannot run at all
#           (a host without a kernel of its own, where supermin fails),
#           qemu-img convert alone stands in (the floor kiln's own conversion
#           cannot beat), and the reason is shown.
# and prints the medians and the ratio. Each kiln result is checked: its
# vmlinuz is the baked one.
#
# Usage: sudo bench/import.sh [IMAGE_DIR]
# Environment: KILN=path/to/kiln (default build/kiln), RUNS=N (default 3),
#   BENCH_IMAGE=DIR, TMPDIR, BENCH_SUMMARY=FILE.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
kiln=${KILN:-$here/build/kiln}
runs=${RUNS:-3}

die() { echo "import: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: the untimed bake runs mmdebstrap as root"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
command -v qemu-img >/dev/null || die "qemu-img not found (Debian package qemu-utils)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-import.XXXXXX")
trap 'rm -rf --one-file-system -- "$work"' EXIT
trap 'echo; echo "import: interrupted" >&2; exit 130' INT TERM
kiln=$(bench_copy_kiln "$kiln" "$work/bin") || exit 2
image=$(bench_image_dir import "$kiln" "$work" "${1:-${BENCH_IMAGE:-}}") || exit 2

bench_machine_before
qemu-img convert -O qcow2 "$image/disk.raw" "$work/vendor.qcow2"
echo "source: $(du -h --apparent-size "$work/vendor.qcow2" | cut -f1) qcow2 ($(du -h "$work/vendor.qcow2" | cut -f1) allocated) of a 2 GiB disk"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

manual_way="qemu-img convert + virt-get-kernel"
guestfs_env=()
[[ $(bench_kvm_state) == works* ]] || guestfs_env=(LIBGUESTFS_BACKEND_SETTINGS=force_tcg)
if ! command -v virt-get-kernel >/dev/null; then
  manual_way="qemu-img convert alone (virt-get-kernel not installed: package libguestfs-tools)"
elif ! env "${guestfs_env[@]}" virt-get-kernel -a "$work/vendor.qcow2" -o "$work/probe" >"$work/probe.log" 2>&1; then
  manual_way="qemu-img convert alone (virt-get-kernel failed here: $(tail -n 1 "$work/probe.log"))"
fi
rm -rf -- "$work/probe"

kiln_times=() manual_times=()
for run in $(seq "$runs"); do
  rm -rf -- "$work/out" "$work/manual"
  bench_settle
  start=$(now_ms)
  "$kiln" import "$work/vendor.qcow2" -o "$work/out" >/dev/null
  kiln_times+=($(( $(now_ms) - start )))
  cmp -s "$work/out/vmlinuz" "$image/vmlinuz" || die "run $run: kiln's vmlinuz is not the baked one"

  mkdir -p "$work/manual"
  bench_settle
  start=$(now_ms)
  qemu-img convert -O raw "$work/vendor.qcow2" "$work/manual/disk.raw"
  if [[ $manual_way == *virt-get-kernel ]]; then
    env "${guestfs_env[@]}" virt-get-kernel -a "$work/manual/disk.raw" --format raw -o "$work/manual" >/dev/null
  fi
  manual_times+=($(( $(now_ms) - start )))
  echo "run $run: kiln $(seconds "${kiln_times[-1]}") s, manual $(seconds "${manual_times[-1]}") s"
done

kiln_median=$(printf '%s\n' "${kiln_times[@]}" | bench_median)
manual_median=$(printf '%s\n' "${manual_times[@]}" | bench_median)
bench_summary_line "import of a 2 GiB qcow2: kiln $(seconds "$kiln_median") s, $manual_way $(seconds "$manual_median") s (kiln/other $(bench_ratio "$kiln_median" "$manual_median"), median of $runs)"
bench_machine_after
