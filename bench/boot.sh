#!/usr/bin/env bash
# Times kiln's runtime, in one run:
#   1. instance creation (overlay, seed disk, record; not the guest's boot)
#      against what a user would script without kiln: a qcow2 overlay made
#      with qemu-img plus a cloud-init NoCloud seed made with cloud-localds;
#   2. boot to ready of the default image, tuned for fast boot, against the
#      same Debian rootfs with no boot tuning, under UML and under qemu TCG;
#   3. the tuned image's boot to ready against the same image booted without
#      kiln, as a user would by hand: plain linux.uml, and plain
#      qemu-system-x86_64 -kernel (TCG), timed to the serial console's login
#      prompt (the serial getty is part of multi-user.target, after which
#      kiln's agent reports ready). The ratio kiln/plain travels between
#      machines where the seconds do not;
#   4. which backend `--backend auto` picks here, and why.
# Targets: creation <= 50 ms; ready <= 6 s under UML and <= 15 s under TCG,
# and kiln's ready no later than the plain boot's login prompt (kiln/plain <= 1.0x).
#
# Usage: bench/boot.sh [TUNED-IMAGE-DIR [STOCK-IMAGE-DIR]]
#   Without arguments both images are baked first (from the stage cache in
#   $KILN_CACHE if it has them), into a scratch directory.
# Environment: KILN=path/to/kiln (default build/kiln), RUNS (default 3),
#   CREATES (default 20), TCG=0 to skip the qemu boots.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
kiln_source=${KILN:-$here/build/kiln}
runs=${RUNS:-3}
creates=${CREATES:-20}

die() { echo "boot: $*" >&2; exit 2; }
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
command -v python3 >/dev/null || die "python3 not found (Debian package python3)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-boot.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
cleanup() {
  bench_destroy_instances "$kiln"
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "boot: interrupted" >&2; exit 130' INT TERM
# A private copy: a rebuild of build/kiln must not change the binary mid-run.
kiln=$(bench_copy_kiln "$kiln_source" "$work/bin") || exit 2

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Absolute: qemu-img resolves a backing file from the overlay's directory.
tuned=${1:+$(realpath -- "$1")}
stock=${2:+$(realpath -- "$2")}
recipe=$here/recipes/debian-12-minimal.toml
if [[ -z $tuned ]]; then
  tuned=$work/tuned
  "$kiln" bake "$recipe" -o "$tuned" >/dev/null
fi
if [[ -z $stock ]]; then
  # The same recipe without its boot tuning: no quiet, no masked units, sshd
  # as a daemon, initramfs-tools' own choice of modules, one virtual CPU.
  stock=$work/stock
  "$kiln" bake "$recipe" -o "$stock" --set 'image.kernel_cmdline=console=tty0 console=ttyS0' --set output.vcpus=1 \
    --set 'bootstrap.initramfs_modules=[]' \
    --set 'customize.files=[{path="/etc/motd", content="Baked by kiln.\n"}]' >/dev/null
fi
bench_machine_before

echo "== instance creation ($creates instances each)"
: > "$work/kiln-create.txt"
for i in $(seq 1 "$creates"); do
  "$kiln" boot "$tuned" --name "c$i" --backend uml --net none --detach --json 2>/dev/null | bench_json_field create_ms >> "$work/kiln-create.txt"
  "$kiln" destroy "c$i" >/dev/null
done
kiln_create=$(bench_median < "$work/kiln-create.txt")
bench_summary_line "creation: kiln boot (overlay, seed disk, record) median ${kiln_create} ms (target <= 50 ms)"
if command -v cloud-localds >/dev/null; then
  : > "$work/manual-create.txt"
  printf 'instance-id: i1\nlocal-hostname: web1\n' > "$work/meta-data"
  printf '#cloud-config\nhostname: web1\n' > "$work/user-data"
  for i in $(seq 1 "$creates"); do
    start=$(now_ms)
    qemu-img create -q -f qcow2 -F raw -b "$tuned/disk.raw" "$work/overlay$i.qcow2"
    cloud-localds "$work/seed$i.iso" "$work/user-data" "$work/meta-data"
    echo $(( $(now_ms) - start )) >> "$work/manual-create.txt"
    rm -f "$work/overlay$i.qcow2" "$work/seed$i.iso"
  done
  manual=$(bench_median < "$work/manual-create.txt")
  bench_summary_line "creation: qemu-img overlay + cloud-localds seed median ${manual} ms ($(bench_ratio "$manual" "$kiln_create") kiln's time)"
else
  echo "qemu-img + cloud-localds: skipped (cloud-localds not installed; Debian package cloud-image-utils)"
fi

ready_runs() {  # BACKEND IMAGE LABEL
  : > "$work/$3.txt"
  for i in $(seq 1 "$runs"); do
    "$kiln" boot "$2" --name "r-$3-$i" --backend "$1" --net none --detach --wait-ready=600 --json 2>/dev/null \
      | bench_json_field ready_seconds >> "$work/$3.txt"
    "$kiln" destroy "r-$3-$i" >/dev/null
  done
  bench_median < "$work/$3.txt"
}

echo "== boot to ready ($runs boots each, median; tuned and stock alternate per backend)"
for backend in uml qemu; do
  [[ $backend == qemu && ${TCG:-1} == 0 ]] && { echo "qemu: skipped (TCG=0)"; continue; }
  t=$(ready_runs "$backend" "$tuned" "$backend-tuned")
  s=$(ready_runs "$backend" "$stock" "$backend-stock")
  target=$([[ $backend == uml ]] && echo 6 || echo 15)
  bench_summary_line "ready, $backend: tuned ${t} s, stock ${s} s (stock/tuned $(bench_ratio "$s" "$t")); target <= ${target} s"
done

# The plain boots: the tuned image's disk.raw (through a throwaway
# copy-on-write layer), its kernel and initrd, the image's own kernel command
# line with the root partition and console a user would name; no seed disk,
# so the image's agent finds none and does nothing.
read -r root_number _ _ < <(bench_root_partition "$tuned") || die "$tuned: no root partition in its manifest.json"
plain_args=$(python3 -c '
import json, sys
words = json.load(open(sys.argv[1]))["image"]["kernel_cmdline"].split()
print(" ".join(w for w in words if w != "ro" and not w.startswith(("root=", "console="))))' "$tuned/manifest.json")
# $plain_args is words for the kernel: split on purpose.
# shellcheck disable=SC2086
plain_uml() {  # RUN
  rm -f "$work/plain.cow"
  "$here/bench/lib/time_to_text.py" 600 "login:" -- linux.uml "umid=kiln-bench-plain-$1" "uml_dir=$work/" mem=1024M \
    "ubd0=$work/plain.cow,$tuned/disk.raw" con=null ssl=null ssl0=fd:0,fd:1 "root=/dev/ubda$root_number" ro \
    console=ttyS0 $plain_args
}
# shellcheck disable=SC2086
plain_qemu() {
  "$here/bench/lib/time_to_text.py" 600 "login:" -- qemu-system-x86_64 -machine q35,accel=tcg \
    -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16 -m 1024M -smp 2 -nodefaults -display none -serial stdio \
    -kernel "$tuned/vmlinuz" -initrd "$tuned/initrd.img" -append "root=/dev/vda$root_number ro console=ttyS0 $plain_args" \
    -drive "file=$tuned/disk.raw,format=raw,if=virtio,snapshot=on"
}
echo "== boot to ready against a plain boot of the same image to its login prompt ($runs each, median)"
for backend in uml qemu; do
  [[ $backend == qemu && ${TCG:-1} == 0 ]] && { echo "qemu: skipped (TCG=0)"; continue; }
  if [[ $backend == uml ]] && ! command -v linux.uml >/dev/null; then echo "uml: skipped (no linux.uml)"; continue; fi
  : > "$work/plain-$backend.txt"
  for i in $(seq 1 "$runs"); do
    "plain_$backend" "$i" >> "$work/plain-$backend.txt" || die "plain $backend boot failed (see above)"
  done
  p=$(bench_median < "$work/plain-$backend.txt")
  k=$(ready_runs "$backend" "$tuned" "$backend-against-plain")
  bench_summary_line "ready against plain, $backend: kiln ${k} s, plain $( [[ $backend == uml ]] && echo linux.uml || echo "qemu -kernel") ${p} s to login (kiln/plain $(bench_ratio "$k" "$p"); target <= 1.0x)"
done

echo "== --backend auto"
"$kiln" boot "$tuned" --name auto --backend auto --net none --detach --json 2>"$work/auto.err" >/dev/null || true
bench_summary_line "$(sed -n 's/^kiln: auto: /auto picked: /p' "$work/auto.err")"
"$kiln" destroy auto >/dev/null 2>&1 || true
bench_machine_after
