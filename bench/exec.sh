#!/usr/bin/env bash
# Times kiln's exec channel against what a user would otherwise use, ssh to
# the same guest, in one run:
#   1. a round trip: `kiln exec NAME -- true` against
#      `ssh -o ControlMaster=no -o BatchMode=yes -p PORT root@127.0.0.1 true`
#      (a new connection each time, as a script's ssh makes), both to one
#      guest booted with `kiln boot --ssh-port PORT --ssh-key KEY.pub`, the
#      two alternating, EXECS of each, median. ssh checks the guest's host
#      keys against those kiln reported at ready (no StrictHostKeyChecking=no)
#      and reads no ssh_config (-F /dev/null), so nobody's ControlPersist
#      or GSSAPI setting changes its time;
#   2. a copy of SIZE_MIB MiB of random data each way: `kiln cp FILE
#      NAME:/root/f` and `kiln cp NAME:/root/f FILE` against scp (OpenSSH's
#      own default, the SFTP protocol) to and from the same guest, in MB/s
#      (10^6 bytes/s); every copy's sha256 is checked outside the timings, on
#      the host and in the guest;
#   3. `kiln run IMAGE --backend uml -- true`, boot to exit, RUNS times,
#      median.
# 1 and 2 run under UML and under qemu (TCG where KVM does not work).
# kiln's UML instances get user networking from slirp, which forwards no
# ports: where kiln refuses --ssh-port with UML, or ssh cannot reach the guest
# through it, the script says so and compares ssh and scp under qemu only.
# Targets: kiln exec >= 5x faster than ssh, and under 50 ms under UML;
# kiln run ... -- true under UML under 8 s. Benchmarks report; they do not
# assert. Under UML the host-to-guest copy goes through hostfs, not the
# serial line (about 50 MB/s here).
#
# Usage: bench/exec.sh [IMAGE-DIR]   (a `kiln bake` output with the exec
#          agent; default run-all's shared bake, BENCH_IMAGE, else the default
#          recipe baked here first, untimed, through BENCH_CACHE if set: that
#          needs root)
# Environment: KILN=path/to/kiln (default build/kiln; its kiln-exec-agent
#   beside it, or KILN_EXEC_AGENT, for the bake), EXECS (default 20), SIZE_MIB
#   (default 100), RUNS (default 3), TCG=0 to skip qemu, TMPDIR for scratch
#   space (SIZE_MIB x 3 on the host), BENCH_SUMMARY=FILE to append the
#   summary lines to.
set -euo pipefail
export LC_ALL=C  # $EPOCHREALTIME with a decimal point

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
execs=${EXECS:-20}
size_mib=${SIZE_MIB:-100}
runs=${RUNS:-3}

die() { echo "exec: $*" >&2; exit 2; }
for setting in "EXECS=$execs" "SIZE_MIB=$size_mib" "RUNS=$runs"; do
  [[ ${setting#*=} =~ ^[1-9][0-9]*$ ]] || die "$setting: expected a positive integer"
done
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in python3 ssh scp ssh-keygen sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian packages python3, openssh-client, coreutils)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-exec.XXXXXX")
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
kiln=$work/bin/kiln
cleanup() {
  bench_destroy_instances "$kiln"
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "exec: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2

image_dir=$(bench_image_dir exec "$kiln" "$work" "$image_dir") || exit 2

# Milliseconds, to 0.1, since START (an $EPOCHREALTIME): no fork in the timing.
since_ms() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'; }
range() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "range %s-%s ms", lo, hi }'; }
mb_per_s() { awk -v mib="$size_mib" -v ms="$1" 'BEGIN { printf "%.1f", mib * 1048576 / 1e6 / (ms / 1000) }'; }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The host keys a --json boot reported, as known_hosts lines for 127.0.0.1:PORT.
known_hosts() {  # BOOT-JSON PORT
  python3 - "$1" "$2" <<'PY'
import json, sys
result = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for key in result.get("ssh_host_keys", []):
    print(f"[127.0.0.1]:{sys.argv[2]} {key['public_key'].strip()}")
PY
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
guest_sha() { "$kiln" exec "$1" -- sha256sum "$2" </dev/null | cut -d' ' -f1; }

ssh-keygen -q -t ed25519 -N '' -C kiln-bench -f "$work/key"
data=$work/data
head -c $(( size_mib * 1048576 )) /dev/urandom >"$data"
data_sha=$(sha "$data")
copy_timeout=$(( 600 + size_mib * 10 ))

bench_machine_before
echo "image: $image_dir"

# Boots BACKEND, then times exec against ssh and cp against scp on it.
bench_backend() {  # BACKEND
  local backend=$1 name=x-$1 port label ssh_ok=1 ssh_why="" i start
  port=$(free_port)
  local boot=("$kiln" boot "$image_dir" --name "$name" --backend "$backend" --detach --wait-ready=600
              --ssh-key "$work/key.pub" --json)
  if ! "${boot[@]}" --ssh-port "$port" >"$work/$backend-boot.json" 2>"$work/$backend-boot.err"; then
    # A kiln that knows UML forwards no ports refuses --ssh-port with it
    # (older ones took it and forwarded nothing): its reason, and no ssh.
    grep -q -- '--ssh-port' "$work/$backend-boot.err" ||
      { cat "$work/$backend-boot.err" >&2; die "$backend: kiln boot failed"; }
    ssh_ok=0
    ssh_why="kiln boot refused it: $(sed -n 's/^kiln: error: //p' "$work/$backend-boot.err" | head -n 1)"
    "${boot[@]}" >"$work/$backend-boot.json" 2>"$work/$backend-boot.err" ||
      { cat "$work/$backend-boot.err" >&2; die "$backend: kiln boot failed"; }
  fi
  label=$backend
  if [[ $backend == qemu ]]; then
    label=$([[ $(bench_json_field kvm <"$work/$backend-boot.json") == True ]] && echo "qemu (KVM)" || echo "qemu (TCG)")
  fi
  if (( ssh_ok )); then
    echo "== $label: $name ready in $(bench_json_field ready_seconds <"$work/$backend-boot.json") s, booted with --ssh-port $port"
    known_hosts "$work/$backend-boot.json" "$port" >"$work/known_hosts-$backend"
    [[ -s $work/known_hosts-$backend ]] || die "$backend: kiln boot --json reported no ssh host keys"
  else
    echo "== $label: $name ready in $(bench_json_field ready_seconds <"$work/$backend-boot.json") s, without --ssh-port"
  fi
  local ssh_opts=(-F /dev/null -o ControlMaster=no -o BatchMode=yes -o IdentitiesOnly=yes -i "$work/key"
                  -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$work/known_hosts-$backend"
                  -o LogLevel=ERROR -o ConnectTimeout=20)

  # Untimed: the boot's last jobs finish. Ready comes at multi-user.target;
  # after it the image makes its slow RSA host key and reloads sshd, which
  # resets a connection that comes in meanwhile, and takes CPU from both
  # sides' timings. Then first calls: the guest's first sshd and agent
  # sessions page in what they run.
  start=$EPOCHREALTIME
  "$kiln" exec "$name" -- systemctl is-system-running --wait </dev/null >"$work/state.txt" 2>&1 || true
  echo "boot jobs done $(seconds "$(since_ms "$start")") s after ready (systemctl is-system-running --wait: $(tail -n 1 "$work/state.txt"))"
  "$kiln" exec "$name" -- true </dev/null 2>"$work/exec.err" ||
    { cat "$work/exec.err" >&2; die "$backend: kiln exec failed (is the exec agent in the image?)"; }
  # sshd re-executes itself on that reload and resets connections for a
  # moment after the boot's jobs are done: tried for up to 30 s. Refused
  # outright means nothing listens on the host's port.
  local tries=0 first=""
  while (( ssh_ok )) && ! ssh "${ssh_opts[@]}" -p "$port" root@127.0.0.1 true </dev/null 2>"$work/ssh.err"; do
    [[ -n $first ]] || first=$(grep -v '^\s*$' "$work/ssh.err" | tail -n 1)
    if grep -q 'Connection refused' "$work/ssh.err" || (( ++tries >= 30 )); then
      ssh_ok=0
      ssh_why="it did not reach the guest's sshd: $(grep -v '^\s*$' "$work/ssh.err" | tail -n 1)"
    else
      sleep 1
    fi
  done
  if (( ssh_ok && tries > 0 )); then
    echo "ssh: $tries untimed connections failed ($first) before sshd answered"
  fi

  echo "-- exec round trip, $execs of each, alternating (ms)"
  : >"$work/$backend-kiln-exec.txt"
  : >"$work/$backend-ssh.txt"
  for (( i = 1; i <= execs; i++ )); do
    start=$EPOCHREALTIME
    "$kiln" exec "$name" -- true </dev/null
    since_ms "$start" >>"$work/$backend-kiln-exec.txt"
    if (( ssh_ok )); then
      start=$EPOCHREALTIME
      ssh "${ssh_opts[@]}" -p "$port" root@127.0.0.1 true </dev/null || die "$backend: ssh run $i failed"
      since_ms "$start" >>"$work/$backend-ssh.txt"
    fi
  done
  local kiln_exec ssh_exec target=""
  kiln_exec=$(bench_median <"$work/$backend-kiln-exec.txt")
  [[ $backend == uml ]] && target="; target < 50 ms"
  if (( ssh_ok )); then
    ssh_exec=$(bench_median <"$work/$backend-ssh.txt")
    bench_summary_line "exec, $label: kiln exec median $kiln_exec ms ($(range <"$work/$backend-kiln-exec.txt")), ssh median $ssh_exec ms ($(range <"$work/$backend-ssh.txt")): kiln $(bench_ratio "$ssh_exec" "$kiln_exec") faster (target >= 5x$target)"
  else
    local elsewhere="ssh compared under qemu only"
    [[ $backend == qemu || ${TCG:-1} == 0 ]] && elsewhere="ssh not compared"
    bench_summary_line "exec, $label: kiln exec median $kiln_exec ms ($(range <"$work/$backend-kiln-exec.txt"))${target:+ (${target#; })}; ssh: not measured: --ssh-port $port: $ssh_why; $elsewhere"
  fi

  echo "-- copy, $size_mib MiB of random data each way (one copy each)"
  local ms_in ms_out
  start=$EPOCHREALTIME
  timeout "$copy_timeout" "$kiln" cp "$data" "$name:/root/f" || die "$backend: kiln cp to the guest failed or took over $copy_timeout s"
  ms_in=$(since_ms "$start")
  start=$EPOCHREALTIME
  timeout "$copy_timeout" "$kiln" cp "$name:/root/f" "$work/back" || die "$backend: kiln cp from the guest failed or took over $copy_timeout s"
  ms_out=$(since_ms "$start")
  [[ $(guest_sha "$name" /root/f) == "$data_sha" ]] || die "$backend: kiln cp left a different /root/f in the guest"
  [[ $(sha "$work/back") == "$data_sha" ]] || die "$backend: kiln cp brought back different bytes"
  rm -f "$work/back"
  "$kiln" exec "$name" -- rm -f /root/f </dev/null
  echo "kiln cp host->guest $(seconds "$ms_in") s, guest->host $(seconds "$ms_out") s (sha256 checked both ends)"
  if (( ssh_ok )); then
    local scp_in scp_out
    start=$EPOCHREALTIME
    timeout "$copy_timeout" scp -q "${ssh_opts[@]}" -P "$port" "$data" root@127.0.0.1:/root/g </dev/null ||
      die "$backend: scp to the guest failed or took over $copy_timeout s"
    scp_in=$(since_ms "$start")
    start=$EPOCHREALTIME
    timeout "$copy_timeout" scp -q "${ssh_opts[@]}" -P "$port" root@127.0.0.1:/root/g "$work/back" </dev/null ||
      die "$backend: scp from the guest failed or took over $copy_timeout s"
    scp_out=$(since_ms "$start")
    [[ $(guest_sha "$name" /root/g) == "$data_sha" ]] || die "$backend: scp left a different /root/g in the guest"
    [[ $(sha "$work/back") == "$data_sha" ]] || die "$backend: scp brought back different bytes"
    rm -f "$work/back"
    "$kiln" exec "$name" -- rm -f /root/g </dev/null
    echo "scp     host->guest $(seconds "$scp_in") s, guest->host $(seconds "$scp_out") s (sha256 checked both ends)"
    bench_summary_line "cp, $label, $size_mib MiB host->guest: kiln $(mb_per_s "$ms_in") MB/s, scp $(mb_per_s "$scp_in") MB/s (kiln $(bench_ratio "$scp_in" "$ms_in") scp's speed)"
    bench_summary_line "cp, $label, $size_mib MiB guest->host: kiln $(mb_per_s "$ms_out") MB/s, scp $(mb_per_s "$scp_out") MB/s (kiln $(bench_ratio "$scp_out" "$ms_out") scp's speed)"
  else
    bench_summary_line "cp, $label, $size_mib MiB: kiln host->guest $(mb_per_s "$ms_in") MB/s, guest->host $(mb_per_s "$ms_out") MB/s; scp: not measured (no ssh to this guest, above)"
  fi
  "$kiln" destroy "$name" >/dev/null
}

bench_backend uml
if [[ ${TCG:-1} == 0 ]]; then
  echo "== qemu: skipped (TCG=0)"
else
  bench_backend qemu
fi

echo "== kiln run $(basename "$image_dir") --backend uml -- true, boot to exit ($runs runs)"
: >"$work/run.txt"
for (( i = 1; i <= runs; i++ )); do
  start=$EPOCHREALTIME
  "$kiln" run "$image_dir" --backend uml --json -- true </dev/null 2>"$work/run.err" ||
    { cat "$work/run.err" >&2; die "kiln run failed"; }
  ms=$(since_ms "$start")
  echo "$ms" >>"$work/run.txt"
  echo "run $i: $(seconds "$ms") s (guest ready after $(grep '^{' "$work/run.err" | bench_json_field ready_seconds | xargs printf '%.2f') s)"
done
bench_summary_line "kiln run --backend uml -- true: median $(seconds "$(bench_median <"$work/run.txt")") s of $runs (target < 8 s)"
bench_machine_after
