#!/usr/bin/env bash
# Times instances resumed from a snapshot against the boots they replace,
# same image, in one run:
#   1. making the snapshot (`kiln snapshot make`: one boot to ready, the
#      agent's quiesce, qemu's save), once, untimed against anything; its
#      size on disk;
#   2. RUNS instances each of: `kiln boot --from-snapshot --net none
#      --wait-ready`, the same with a NIC (`--net user`: plugged in after
#      the resume, and the network daemons started), a normal qemu boot (`--backend qemu`, TCG where KVM does
#      not work), and a UML boot (`--backend uml`), each kind's in a row,
#      each instance destroyed once measured so that none runs beside the
#      next: time to ready as the guest reported it (kiln's
#      ready_seconds), and kiln's own wall time from the command's start to
#      its return; medians;
#   3. memory: each resumed instance's qemu resident set (VmRSS), and the
#      guest's own MemTotal - MemAvailable, against a booted qemu instance's.
# Target (issue 17): resumed ready under 1 s under TCG, at least 10x faster
# than the normal qemu boot. Benchmarks report; they do not assert.
#
# Usage: bench/snapshot.sh [IMAGE-DIR]   (a `kiln bake` output; default
#          run-all's shared bake, BENCH_IMAGE, else the default recipe baked
#          here first, untimed, through BENCH_CACHE if set)
# Environment: KILN=path/to/kiln (default build/kiln), RUNS (default 5),
#   TMPDIR for scratch space (the snapshot: about 250 MB), BENCH_SUMMARY=FILE.
set -euo pipefail
export LC_ALL=C  # $EPOCHREALTIME with a decimal point

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
runs=${RUNS:-5}

die() { echo "snapshot: $*" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in python3 qemu-system-x86_64; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian packages python3, qemu-system-x86)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-snapshot.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state KILN_CACHE=$work/cache
kiln=$work/bin/kiln
cleanup() {
  bench_destroy_instances "$kiln"
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "snapshot: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2
image_dir=$(bench_image_dir snapshot "$kiln" "$work" "$image_dir") || exit 2
bench_machine_before

echo "== making the snapshot of $image_dir"
start=$EPOCHREALTIME
"$kiln" snapshot make "$image_dir" --json > "$work/made.json" || die "kiln snapshot make failed (see above)"
made_s=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
size=$(bench_json_field size < "$work/made.json")
memory=$(bench_json_field memory_mib < "$work/made.json")
bench_summary_line "snapshot: made in ${made_s} s; $(awk -v b="$size" 'BEGIN { printf "%.0f MB", b / 1e6 }') on disk (guest memory ${memory} MiB)"

# kiln's JSON outcome's ready_seconds, and the wall time, for one instance
# of KIND; memory figures for resumed and qemu instances; then destroyed.
measure() {  # KIND RUN
  local kind=$1 name="$1-$2" args start out wall
  case $kind in
    resumed) args=(--from-snapshot --net none) ;;
    resumed-nic) args=(--from-snapshot --net user) ;;
    qemu) args=(--backend qemu --net none) ;;
    uml) args=(--backend uml --net none) ;;
  esac
  start=$EPOCHREALTIME
  out=$("$kiln" boot "$image_dir" --name "$name" --detach --wait-ready=600 --json "${args[@]}" 2>"$work/err") ||
    die "$kind boot failed: $(cat "$work/err")"
  wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  if [[ $kind == resumed* ]] && ! grep -q "resumed from snapshot" <<<"$out"; then
    die "the instance was not resumed from the snapshot: $(cat "$work/err")"
  fi
  bench_json_field ready_seconds <<<"$out" >> "$work/$kind-ready.txt"
  echo "$wall" >> "$work/$kind-wall.txt"
  if [[ $kind == resumed || $kind == qemu ]]; then
    local pid
    pid=$("$kiln" list --json | python3 -c "import json,sys; print([i for i in json.load(sys.stdin) if i['name'] == '$name'][0]['hypervisor_pid'])")
    awk '/^VmRSS:/ { printf "%.0f\n", $2 / 1024 }' "/proc/$pid/status" >> "$work/$kind-rss.txt"
    "$kiln" exec "$name" -- cat /proc/meminfo |
      awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { printf "%.0f\n", (t - a) / 1024 }' >> "$work/$kind-used.txt"
  fi
  "$kiln" destroy "$name" >/dev/null
}

# Each kind's instances one after another: measured here, a resume started
# right after a UML instance ended took 1.7 s instead of 1.0 s, and
# alternating the kinds would measure only that case.
echo "== $runs instances each: resumed, resumed with a NIC, then qemu boots, then UML boots (each destroyed once measured)"
for i in $(seq 1 "$runs"); do measure resumed "$i"; done
for i in $(seq 1 "$runs"); do measure resumed-nic "$i"; done
for i in $(seq 1 "$runs"); do measure qemu "$i"; done
if command -v linux.uml >/dev/null; then
  for i in $(seq 1 "$runs"); do measure uml "$i"; done
fi

median() { bench_median < "$work/$1.txt"; }
resumed=$(median resumed-ready)
qemu=$(median qemu-ready)
bench_summary_line "ready, resumed from the snapshot: median ${resumed} s (range $(sort -n "$work/resumed-ready.txt" | sed -n '1p;$p' | paste -sd-)), kiln's wall $(median resumed-wall) s; target < 1 s"
bench_summary_line "ready, resumed with a NIC (user networking): median $(median resumed-nic-ready) s (range $(sort -n "$work/resumed-nic-ready.txt" | sed -n '1p;$p' | paste -sd-)), kiln's wall $(median resumed-nic-wall) s"
bench_summary_line "ready, qemu boot: median ${qemu} s, kiln's wall $(median qemu-wall) s: resumed is $(bench_ratio "$qemu" "$resumed") faster; target >= 10x"
if [[ -s $work/uml-ready.txt ]]; then
  uml=$(median uml-ready)
  bench_summary_line "ready, UML boot: median ${uml} s, kiln's wall $(median uml-wall) s: resumed is $(bench_ratio "$uml" "$resumed") faster"
else
  echo "UML: skipped (no linux.uml; Debian package user-mode-linux)"
fi
bench_summary_line "memory per instance: resumed qemu RSS $(median resumed-rss) MiB (guest uses $(median resumed-used) MiB), booted qemu RSS $(median qemu-rss) MiB (guest uses $(median qemu-used) MiB)"
bench_machine_after
