#!/usr/bin/env bash
# Times `kiln migrate --connect` (libvirt instances) against `virsh migrate
# --live --copy-storage-inc`, what a libvirt user would otherwise run, in one
# run, the same 1 GiB guest moving between two libvirt hosts on this
# machine: this machine's libvirtd and a second one in a mount namespace of
# its own (tests/integration/second_libvirt_host.sh), each reached over
# qemu+ssh:// to an sshd of the benchmark's own. The guest goes back and
# forth: kiln moves it one way, virsh the other, RUNS times. For each move:
#   - total: the whole command, from the user's side;
#   - downtime: libvirt's figure (`virsh domjobinfo --completed`).
# virsh needs the instance's volumes on the target first (its overlay over
# the image and its seed disk; libvirt copies only what the guest wrote):
# they are made by hand before each virsh move, untimed, as a user would
# script it; kiln makes them itself, inside its time. The first move sends
# the image's volumes (untimed, shown); the timed ones find them there.
# Benchmarks report; they do not assert.
#
# Needs root (qemu:///system, sshd, a mount namespace); starts libvirtd and
# virtlogd when they are not running, and stops those it started. The
# guest, the second host and the sshds end on exit, Ctrl-C included.
#
# Usage: sudo bench/libvirt_migration.sh [IMAGE-DIR]   (default run-all's
#          shared bake, BENCH_IMAGE, else the default recipe baked here)
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
local_uri=qemu:///system
name=kblm$$

die() { echo "libvirt_migration: $*" >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
  bench_summary_line "libvirt_migration: skipped (not root: libvirtd, sshd and a mount namespace need root)"
  exit 0
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in libvirtd virtlogd virsh /usr/sbin/sshd ssh ssh-keygen nsenter unshare python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-libvirt-migration.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
kiln=$work/bin/kiln
pids=() second_pid=
declare -A uri
cleanup() {
  for host in a b; do
    [[ -n ${uri[$host]:-} ]] || continue
    virsh -c "${uri[$host]}" destroy "$name" >/dev/null 2>&1 || true
    virsh -c "${uri[$host]}" undefine "$name" >/dev/null 2>&1 || true
    for volume in "$name.disk0.qcow2" "$name.seed.img" "$name.seed.img.done"; do
      virsh -c "${uri[$host]}" vol-delete --pool kiln "$volume" >/dev/null 2>&1 || true
    done
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n $second_pid ]]; then
    kill "$second_pid" 2>/dev/null || true
    wait "$second_pid" 2>/dev/null || true
    for daemon in libvirtd virtlogd; do
      [[ -f $work/second/$daemon.pid ]] && kill -KILL "$(cat "$work/second/$daemon.pid")" 2>/dev/null || true
    done
  fi
  bench_libvirtd_down
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "libvirt_migration: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2

bench_libvirtd_up "$local_uri" || exit 2
"$here/tests/integration/second_libvirt_host.sh" "$work/second" >"$work/second.log" 2>&1 &
second_pid=$!
for _ in $(seq 300); do [[ -e $work/second/ready ]] && break; sleep 0.2; done
[[ -e $work/second/ready ]] || { cat "$work/second.log" >&2; die "the second libvirtd did not come up"; }

# An sshd per host: a (this machine's libvirtd) and b (in the second's
# namespace, where virt-ssh-helper reaches the second libvirtd).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ssh-keygen -q -t ed25519 -N "" -f "$work/client_key"
printf '#!/bin/sh\nexec ssh -o BatchMode=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes "$@"\n' \
  "$work/known_hosts" >"$work/ssh"
chmod 755 "$work/ssh"
mkdir -p /run/sshd
for host in a b; do
  port=$(free_port)
  ssh-keygen -q -t ed25519 -N "" -f "$work/host_key_$host"
  echo "[127.0.0.1]:$port $(cat "$work/host_key_$host.pub")" >>"$work/known_hosts"
  printf 'Port %s\nListenAddress 127.0.0.1\nHostKey %s\nPidFile none\nAuthorizedKeysFile %s\n' \
    "$port" "$work/host_key_$host" "$work/client_key.pub" >"$work/sshd_$host"
  printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n' \
    >>"$work/sshd_$host"
  launcher=()
  [[ $host == b ]] && launcher=(nsenter "--mount=/proc/$second_pid/ns/mnt" --)
  "${launcher[@]}" /usr/sbin/sshd -D -f "$work/sshd_$host" -E "$work/sshd_$host.log" &
  pids+=($!)
  uri[$host]="qemu+ssh://root@127.0.0.1:$port/system?keyfile=$work/client_key&command=$work/ssh"
done
for host in a b; do
  for _ in $(seq 100); do virsh -c "${uri[$host]}" version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -c "${uri[$host]}" version >/dev/null 2>&1 || die "libvirt on host $host is not reachable over ssh"
done

image_dir=$(bench_image_dir libvirt_migration "$kiln" "$work" "$image_dir") || exit 2

# Memory the guest has touched is what live migration sends: its first
# boot fills 256 MiB of tmpfs (libvirt instances have no `kiln exec` yet).
printf '#!/bin/sh\nhead -c 268435456 /dev/urandom > /dev/shm/fill\n' >"$work/fill.sh"
chmod 755 "$work/fill.sh"

bench_machine_before
echo "image: $image_dir"
"$kiln" boot "$image_dir" --name "$name" --connect "${uri[a]}" --memory 1G --firstboot "$work/fill.sh" \
  --wait-ready=600 >/dev/null 2>"$work/boot.err" || { cat "$work/boot.err" >&2; die "the guest did not boot"; }
echo "libvirt's domain type: $(grep -o 'libvirt at [^)]*)\?[^;]*' "$work/boot.err" | head -n 1 | sed 's/?[^ :]*//')"

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
downtime_on() { virsh -c "$1" domjobinfo "$name" --completed | awk '/^Total downtime:/ { print $3 }'; }

# kiln: FROM -> TO; appends "TOTAL DOWNTIME" (s, ms) to FILE.
kiln_move() {  # FROM TO FILE
  local start=$EPOCHREALTIME
  "$kiln" migrate "$name" --connect "${uri[$1]}" --to "${uri[$2]}" --live --json >"$work/move.json" \
    2>"$work/move.err" || { cat "$work/move.err" >&2; die "kiln migrate from $1 to $2 failed"; }
  echo "$(elapsed "$start") $(bench_json_field downtime_ms <"$work/move.json")" >>"$3"
}

# virsh: the instance's volumes on TO by hand (untimed), then the move;
# the source's volumes removed by hand after it (untimed).
virsh_move() {  # FROM TO FILE
  local from=${uri[$1]} to=${uri[$2]} overlay capacity backing start
  overlay=$(virsh -c "$from" vol-dumpxml --pool kiln "$name.disk0.qcow2")
  capacity=$(sed -n 's:.*<capacity unit=.bytes.>\([0-9]*\)</capacity>.*:\1:p' <<<"$overlay")
  backing=$(sed -n '/<backingStore>/,/<\/backingStore>/s:.*<path>\(.*\)</path>.*:\1:p' <<<"$overlay")
  virsh -c "$to" vol-create-as kiln "$name.disk0.qcow2" "$capacity" --format qcow2 --backing-vol "$backing" \
    --backing-vol-format raw >/dev/null
  virsh -c "$from" vol-download --pool kiln "$name.seed.img" "$work/seed.img" >/dev/null
  virsh -c "$to" vol-create-as kiln "$name.seed.img" "$(stat -c %s "$work/seed.img")" --format raw >/dev/null
  virsh -c "$to" vol-upload --pool kiln "$name.seed.img" "$work/seed.img" >/dev/null
  start=$EPOCHREALTIME
  virsh -c "$from" migrate --live --copy-storage-inc --persistent --undefinesource "$name" "$to" \
    --migrateuri tcp://127.0.0.1 >/dev/null 2>"$work/virsh.err" ||
    { cat "$work/virsh.err" >&2; die "virsh migrate from $1 to $2 failed"; }
  echo "$(elapsed "$start") $(downtime_on "$to")" >>"$3"
  for volume in "$name.disk0.qcow2" "$name.seed.img" "$name.seed.img.done"; do
    virsh -c "$from" vol-delete --pool kiln "$volume" >/dev/null 2>&1 || true
  done
}

kiln_move a b "$work/first.txt"
echo "first move, kiln (sends the image's volumes, untimed): $(awk '{ printf "%.1f s", $1 }' "$work/first.txt"),"\
  "sent $(bench_json_field sent_files <"$work/move.json")"
for (( i = 1; i <= runs; i++ )); do
  virsh_move b a "$work/virsh.txt"
  kiln_move a b "$work/kiln.txt"
  echo "run $i: virsh b -> a $(tail -n 1 "$work/virsh.txt" | awk '{ printf "%.2f s, downtime %s ms", $1, $2 }');" \
    "kiln a -> b $(tail -n 1 "$work/kiln.txt" | awk '{ printf "%.2f s, downtime %.0f ms", $1, $2 }')"
done
kiln_total=$(cut -d' ' -f1 "$work/kiln.txt" | bench_median) virsh_total=$(cut -d' ' -f1 "$work/virsh.txt" | bench_median)
kiln_down=$(cut -d' ' -f2 "$work/kiln.txt" | bench_median) virsh_down=$(cut -d' ' -f2 "$work/virsh.txt" | bench_median)
echo
summary="libvirt live migration of a 1 GiB guest (256 MiB in use), $runs moves each, medians: kiln migrate"
summary+=" --connect $(printf '%.2f' "$kiln_total") s (downtime $(printf '%.0f' "$kiln_down") ms), virsh migrate"
summary+=" --copy-storage-inc $(printf '%.2f' "$virsh_total") s (downtime $(printf '%.0f' "$virsh_down") ms,"
summary+=" volumes made by hand before, untimed): kiln/virsh $(bench_ratio "$kiln_total" "$virsh_total")"
bench_summary_line "$summary"
bench_machine_after
