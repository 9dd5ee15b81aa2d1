#!/usr/bin/env bash
# Times `kiln exec --connect` and `kiln cp --connect` on a guest booted
# through libvirt against what a libvirt user would otherwise use, ssh and
# scp to the guest's address on a libvirt network, in one run, one guest:
#   1. a round trip: `kiln exec NAME --connect URI -- true` against
#      `ssh -o ControlMaster=no -o BatchMode=yes root@ADDRESS true` (a new
#      connection each time, as a script's ssh makes), alternating, EXECS
#      of each, median; ssh reads no ssh_config (-F /dev/null);
#   2. a copy of SIZE_MIB MiB of random data each way: `kiln cp` against
#      scp, in MB/s (10^6 bytes/s); each copy's sha256 is checked outside
#      the timings.
# The guest is on a libvirt network the script makes (transient, isolated,
# 192.168.214.0/24), booted with `kiln boot --connect qemu:///system --net
# NETWORK --ssh-key KEY.pub`. ssh takes the guest's host key on the first,
# untimed connection (accept-new, into a known_hosts of the run's own).
# Benchmarks report; they do not assert.
#
# Needs root (qemu:///system); starts libvirtd and virtlogd when they are
# not running, and stops those it started; destroys its guest and network on
# exit, Ctrl-C included.
#
# Usage: sudo bench/libvirt_exec.sh [IMAGE-DIR]   (default run-all's shared
#          bake, BENCH_IMAGE, else the default recipe baked here, untimed)
# Environment: KILN=path/to/kiln (default build/kiln), EXECS (default 20),
#   SIZE_MIB (default 100), BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
execs=${EXECS:-20}
size_mib=${SIZE_MIB:-100}
uri=qemu:///system
name=kbx$$
network=kbxnet$$

die() { echo "libvirt_exec: $*" >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
  bench_summary_line "libvirt_exec: skipped (not root: qemu:///system and starting libvirtd need root)"
  exit 0
fi
for setting in "EXECS=$execs" "SIZE_MIB=$size_mib"; do
  [[ ${setting#*=} =~ ^[1-9][0-9]*$ ]] || die "$setting: expected a positive integer"
done
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in libvirtd virtlogd virsh ssh scp ssh-keygen sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-libvirt-exec.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
kiln=$work/bin/kiln
cleanup() {
  [[ -x $kiln ]] && "$kiln" destroy "$name" --connect "$uri" >/dev/null 2>&1 || true
  virsh -q -c "$uri" net-destroy "$network" >/dev/null 2>&1 || true
  bench_libvirtd_down
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "libvirt_exec: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2
bench_libvirtd_up "$uri" || exit 2

image_dir=$(bench_image_dir libvirt_exec "$kiln" "$work" "$image_dir") || exit 2

since_ms() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'; }
mb_per_s() { awk -v mib="$size_mib" -v ms="$1" 'BEGIN { printf "%.1f", mib * 1048576 / 1e6 / (ms / 1000) }'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
on_guest() { "$kiln" exec "$name" --connect "$uri" -- "$@" </dev/null; }

cat >"$work/network.xml" <<EOF
<network><name>$network</name><bridge name='kbx$(( $$ % 100000 ))'/>
<ip address='192.168.214.1' netmask='255.255.255.0'><dhcp><range start='192.168.214.10' end='192.168.214.50'/></dhcp></ip>
</network>
EOF
virsh -q -c "$uri" net-create "$work/network.xml" >/dev/null || die "cannot make the libvirt network $network"
ssh-keygen -q -t ed25519 -N '' -C kiln-bench -f "$work/key"

bench_machine_before
echo "image: $image_dir"
"$kiln" boot "$image_dir" --name "$name" --connect "$uri" --net "$network" --ssh-key "$work/key.pub" \
  --wait-ready=600 --json >"$work/boot.json" 2>"$work/boot.err" || { cat "$work/boot.err" >&2; die "kiln boot failed"; }
echo "$name ready in $(bench_json_field ready_seconds <"$work/boot.json") s; $(grep -o 'libvirt at [^"]*' "$work/boot.err" | head -n 1)"

# Untimed: the boot's last jobs, the DHCP lease, and a first connection of
# each kind (ssh takes the host key then).
on_guest systemctl is-system-running --wait >/dev/null 2>&1 || true
address=$(on_guest sh -c 'for i in $(seq 60); do a=$(ip -4 -o addr show eth0 | sed -n "s/.* inet \([0-9.]*\)\/.*/\1/p");
  [ -n "$a" ] && echo "$a" && exit 0; sleep 1; done; exit 1') || die "the guest got no address on $network"
ssh_opts=(-F /dev/null -o ControlMaster=no -o BatchMode=yes -o IdentitiesOnly=yes -i "$work/key"
          -o StrictHostKeyChecking=accept-new -o "UserKnownHostsFile=$work/known_hosts" -o LogLevel=ERROR
          -o ConnectTimeout=20)
tries=0
until ssh "${ssh_opts[@]}" "root@$address" true </dev/null 2>"$work/ssh.err"; do
  (( ++tries < 30 )) || die "ssh did not reach root@$address: $(tail -n 1 "$work/ssh.err")"
  sleep 1
done
echo "guest at $address on $network; ssh answered after $tries untimed failed tries"

echo "-- exec round trip, $execs of each, alternating (ms)"
: >"$work/kiln.txt"
: >"$work/ssh.txt"
for (( i = 1; i <= execs; i++ )); do
  start=$EPOCHREALTIME
  on_guest true
  since_ms "$start" >>"$work/kiln.txt"
  start=$EPOCHREALTIME
  ssh "${ssh_opts[@]}" "root@$address" true </dev/null || die "ssh run $i failed"
  since_ms "$start" >>"$work/ssh.txt"
done
kiln_exec=$(bench_median <"$work/kiln.txt") ssh_exec=$(bench_median <"$work/ssh.txt")
bench_summary_line "exec through libvirt ($uri): kiln exec --connect median $kiln_exec ms, ssh to the guest on a libvirt network median $ssh_exec ms: kiln $(bench_ratio "$ssh_exec" "$kiln_exec") faster"

echo "-- copy, $size_mib MiB of random data each way"
head -c $(( size_mib * 1048576 )) /dev/urandom >"$work/data"
want=$(sha "$work/data")
copy() {  # LABEL COMMAND... : prints the milliseconds it took
  local start=$EPOCHREALTIME
  "${@:2}" </dev/null >/dev/null || die "$1 failed"
  since_ms "$start"
}
kiln_in=$(copy "kiln cp in" "$kiln" cp "$work/data" "$name:/root/kiln-data" --connect "$uri")
[[ $(on_guest sha256sum /root/kiln-data | cut -d' ' -f1) == "$want" ]] || die "kiln cp in: the guest's copy differs"
scp_in=$(copy "scp in" scp "${ssh_opts[@]}" "$work/data" "root@$address:/root/scp-data")
[[ $(on_guest sha256sum /root/scp-data | cut -d' ' -f1) == "$want" ]] || die "scp in: the guest's copy differs"
kiln_out=$(copy "kiln cp out" "$kiln" cp "$name:/root/kiln-data" "$work/kiln-back" --connect "$uri")
[[ $(sha "$work/kiln-back") == "$want" ]] || die "kiln cp out: the copy differs"
scp_out=$(copy "scp out" scp "${ssh_opts[@]}" "root@$address:/root/scp-data" "$work/scp-back")
[[ $(sha "$work/scp-back") == "$want" ]] || die "scp out: the copy differs"
bench_summary_line "copy through libvirt, $size_mib MiB: kiln cp --connect in $(mb_per_s "$kiln_in") MB/s, out $(mb_per_s "$kiln_out") MB/s; scp in $(mb_per_s "$scp_in") MB/s, out $(mb_per_s "$scp_out") MB/s: kiln/scp in $(bench_ratio "$scp_in" "$kiln_in"), out $(bench_ratio "$scp_out" "$kiln_out")"
bench_machine_after
