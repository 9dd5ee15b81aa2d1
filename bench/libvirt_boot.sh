#!/usr/bin/env bash
# Times booting an image through libvirt (`kiln boot --connect
# qemu:///system`) against kiln's own qemu backend (`kiln boot --backend
# qemu`), in one run, the same image and VM shape, taking turns:
#   - ready: from the guest's start to its agent's ready report, as each
#     path measures it (kiln's supervisor; libvirt's console stream);
#   - wall: the whole `kiln boot --wait-ready` command, from the user's
#     side: planning, the overlay and seed disk, for libvirt the content
#     hashes of the image's files and the seed's upload, the start, the wait.
# Before the timed boots, one untimed boot through libvirt puts the image in
# the storage pool (its time and what it uploaded are printed): the figures
# are those of an image already on the host, as every boot after the first.
# Both backends run qemu, under KVM where libvirt and kiln find it, else TCG.
# Benchmarks report; they do not assert.
#
# Needs root (qemu:///system); starts libvirtd and virtlogd when they are not
# running, and stops those it started. Instances live in a private state
# root and are destroyed on exit, Ctrl-C included; the pool's image volumes
# stay, as after any boot.
#
# Usage: sudo bench/libvirt_boot.sh [IMAGE-DIR]   (default run-all's shared
#          bake, BENCH_IMAGE, else the default recipe baked here, untimed)
# Environment: KILN=path/to/kiln (default build/kiln), RUNS (default 3),
#   BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
runs=${RUNS:-3}
uri=qemu:///system

die() { echo "libvirt_boot: $*" >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
  bench_summary_line "libvirt_boot: skipped (not root: qemu:///system and starting libvirtd need root)"
  exit 0
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in libvirtd virtlogd virsh python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-libvirt.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
kiln=$work/bin/kiln
cleanup() {
  if [[ -x $kiln ]]; then
    for name in $("$kiln" list --connect "$uri" --json 2>/dev/null |
                  python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)]' 2>/dev/null); do
      [[ $name == kbl$$-* ]] && "$kiln" destroy "$name" --connect "$uri" >/dev/null 2>&1 || true
    done
    for name in $("$kiln" list --json 2>/dev/null |
                  python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)]' 2>/dev/null); do
      "$kiln" destroy "$name" >/dev/null 2>&1 || true
    done
  fi
  bench_libvirtd_down
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "libvirt_boot: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2

bench_libvirtd_up "$uri" || exit 2

image_dir=$(bench_image_dir libvirt_boot "$kiln" "$work" "$image_dir") || exit 2


# One boot to ready; appends "READY WALL" to FILE. Destroys it after.
boot() {  # own|libvirt NAME FILE
  local how=$1 name=$2 out=$3 start end flags=()
  [[ $how == libvirt ]] && flags=(--connect "$uri") || flags=(--backend qemu --detach)
  start=$EPOCHREALTIME
  "$kiln" boot "$image_dir" --name "$name" "${flags[@]}" --wait-ready=600 --json >"$work/$name.json" 2>"$work/$name.err" ||
    { cat "$work/$name.err" >&2; die "$how: kiln boot $name failed"; }
  end=$EPOCHREALTIME
  echo "$(bench_json_field ready_seconds <"$work/$name.json") $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')" >>"$out"
  if [[ $how == libvirt ]]; then "$kiln" destroy "$name" --connect "$uri" >/dev/null; else "$kiln" destroy "$name" >/dev/null; fi
}

bench_machine_before
echo "image: $image_dir"
start=$EPOCHREALTIME
boot libvirt "kbl$$-first" "$work/first.txt"
echo "first boot through libvirt (untimed): $(cut -d' ' -f2 "$work/first.txt") s wall, uploaded:" \
  "$(bench_json_field uploaded <"$work/kbl$$-first.json")"
echo "libvirt's domain type: $(grep -o 'libvirt at [^"]*' "$work/kbl$$-first.err" | head -n 1)"
for (( i = 1; i <= runs; i++ )); do
  if (( i % 2 )); then boot own "kbo$$-$i" "$work/own.txt"; boot libvirt "kbl$$-$i" "$work/libvirt.txt"
  else boot libvirt "kbl$$-$i" "$work/libvirt.txt"; boot own "kbo$$-$i" "$work/own.txt"; fi
  echo "run $i: kiln's qemu $(tail -n 1 "$work/own.txt" | awk '{ printf "ready %.1f s, wall %.1f s", $1, $2 }');" \
    "libvirt $(tail -n 1 "$work/libvirt.txt" | awk '{ printf "ready %.1f s, wall %.1f s", $1, $2 }')"
done
seconds() { awk '{ printf "%.2f\n", $1 }'; }
own_ready=$(cut -d' ' -f1 "$work/own.txt" | bench_median | seconds) lv_ready=$(cut -d' ' -f1 "$work/libvirt.txt" | bench_median | seconds)
own_wall=$(cut -d' ' -f2 "$work/own.txt" | bench_median | seconds) lv_wall=$(cut -d' ' -f2 "$work/libvirt.txt" | bench_median | seconds)
echo
summary="boot to ready, $runs each, medians: kiln's qemu backend ready $own_ready s (wall $own_wall s),"
summary+=" through libvirt ready $lv_ready s (wall $lv_wall s): libvirt/kiln ready $(bench_ratio "$lv_ready" "$own_ready"),"
summary+=" wall $(bench_ratio "$lv_wall" "$own_wall")"
bench_summary_line "$summary"
bench_machine_after
