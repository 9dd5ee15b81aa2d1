#!/usr/bin/env bash
# Times `kiln migrate --live` of a 1 GiB guest between two kiln hosts on
# this machine: two state roots, each reached over ssh on loopback (an sshd
# of the benchmark's own per host, whose sessions get that host's
# KILN_STATE_DIR), the guest going back and forth RUNS times. For each move:
#   - downtime: qemu's own (from the source's stop to the end of the
#     stream) plus kiln's handover (from there to the guest running on the
#     target), as `kiln migrate --json` reports them;
#   - total: the whole command, from connecting to the guest running there;
#   - stream: qemu's migration alone, the floor kiln's total stands on.
# The ratio total/stream is what kiln adds to qemu's own migration (the
# ssh connection, the probe, the receiving instance, the commit).
# `virsh migrate --live` is the other choice a user has; it needs a second
# libvirt host (libvirt refuses to migrate a guest to the host it is on),
# so on one machine it is reported as skipped, not faked.
# The first move sends the image's files (untimed, shown); the timed ones
# find them there. Benchmarks report; they do not assert.
#
# Needs root (sshd). Instances and the sshds end on exit, Ctrl-C included.
#
# Usage: sudo bench/migration.sh [IMAGE-DIR]   (default run-all's shared
#          bake, BENCH_IMAGE, else the default recipe baked here, untimed)
# Environment: KILN=path/to/kiln (default build/kiln), RUNS (default 4),
#   BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
runs=${RUNS:-4}

die() { echo "migration: $*" >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
  bench_summary_line "migration: skipped (not root: the two hosts' sshd needs root)"
  exit 0
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in /usr/sbin/sshd ssh ssh-keygen python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-migration.XXXXXX")
kiln=$work/bin/kiln
sshd_pids=()
host_env() { echo "KILN_STATE_DIR=$work/$1/state KILN_RUNTIME_DIR=$work/$1/run"; }
on_host() { local host=$1; shift; env $(host_env "$host") "$kiln" "$@"; }
cleanup() {
  if [[ -x $kiln ]]; then
    for host in a b; do on_host "$host" destroy guest >/dev/null 2>&1 || true; done
  fi
  for pid in "${sshd_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "migration: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ssh-keygen -q -t ed25519 -N "" -f "$work/client_key"
mkdir -p /run/sshd
declare -A uri
for host in a b; do
  port=$(free_port)
  ssh-keygen -q -t ed25519 -N "" -f "$work/host_key_$host"
  echo "[127.0.0.1]:$port $(cat "$work/host_key_$host.pub")" >>"$work/known_hosts"
  cat >"$work/sshd_$host" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key_$host
PidFile none
AuthorizedKeysFile $work/client_key.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
SetEnv $(host_env "$host") PATH=$work/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
  /usr/sbin/sshd -D -f "$work/sshd_$host" -E "$work/sshd_$host.log" &
  sshd_pids+=($!)
  uri[$host]="ssh://root@127.0.0.1:$port/?keyfile=$work/client_key&known_hosts=$work/known_hosts"
done

image_dir=$(bench_image_dir migration "$kiln" "$work" "$image_dir") || exit 2


bench_machine_before
echo "image: $image_dir"
on_host a boot "$image_dir" --name guest --backend qemu --memory 1G --detach --wait-ready=600 >/dev/null ||
  die "the guest did not boot"
# Memory the guest has touched is what live migration sends: a process
# that writes 256 MiB keeps it in use, and one that counts shows the
# guest never stopped for long.
on_host a exec guest -- sh -c 'head -c 268435456 /dev/urandom > /dev/shm/fill;
  nohup sh -c "i=0; while :; do i=\$((i+1)); echo \$i > /run/counter; sleep 0.1; done" >/dev/null 2>&1 &' ||
  die "kiln exec in the guest failed"

# One move FROM -> TO; appends "DOWNTIME TOTAL STREAM" (ms) to FILE.
move() {  # FROM TO FILE
  on_host "$1" migrate guest --live --json --to "${uri[$2]}" >"$work/move.json" 2>"$work/move.err" ||
    { cat "$work/move.err" >&2; die "kiln migrate from $1 to $2 failed"; }
  echo "$(bench_json_field downtime_ms <"$work/move.json") $(bench_json_field total_ms <"$work/move.json") $(bench_json_field stream_ms <"$work/move.json")" >>"$3"
}
move a b "$work/first.txt"
echo "first move (sends the image, untimed): $(awk '{ printf "total %.1f s", $2 / 1000 }' "$work/first.txt"), sent" \
  "$(bench_json_field sent_files <"$work/move.json")"
from=b to=a
for (( i = 1; i <= runs; i++ )); do
  before=$(on_host "$from" exec guest -- cat /run/counter)
  move "$from" "$to" "$work/moves.txt"
  after=$(on_host "$to" exec guest -- cat /run/counter)
  echo "move $i ($from -> $to): $(tail -n 1 "$work/moves.txt" | awk '{ printf "downtime %.0f ms, total %.2f s, qemu stream %.2f s", $1, $2 / 1000, $3 / 1000 }'); counter $before -> $after"
  tmp=$from from=$to to=$tmp
done
downtime=$(cut -d' ' -f1 "$work/moves.txt" | bench_median)
total=$(cut -d' ' -f2 "$work/moves.txt" | bench_median)
stream=$(cut -d' ' -f3 "$work/moves.txt" | bench_median)
echo
summary="live migration of a 1 GiB guest (256 MiB in use), $runs moves, medians: downtime $downtime ms,"
summary+=" total $(awk -v t="$total" 'BEGIN { printf "%.2f", t / 1000 }') s against qemu's stream alone"
summary+=" $(awk -v s="$stream" 'BEGIN { printf "%.2f", s / 1000 }') s: $(awk -v t="$total" -v s="$stream" 'BEGIN { printf "%.2fx", t / s }');"
summary+=" virsh migrate --live: skipped (needs a second libvirt host; libvirt refuses to migrate to itself)"
bench_summary_line "$summary"
bench_machine_after
