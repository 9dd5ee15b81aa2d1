#!/usr/bin/env bash
# Times kiln networks against qemu's user networking, in one run, with the
# same two guests (A and B) on each:
#   1. guest to guest: TCP throughput (SIZE_MIB MiB from A to B, in Mbit/s,
#      10^6 bit/s) and latency (32-byte request/reply round trips on one
#      connection, and new connections timed from connect to their first
#      reply). On a kiln network (`kiln network create`, both `--net NAME`)
#      A reaches B by its instance name. On user networking a guest reaches
#      another only through the host: B is booted with `--publish
#      127.0.0.1:PORT:5001` (and 5002) and A connects to 10.0.2.2:PORT,
#      slirp's address of the host;
#   2. host to guest through `--publish 127.0.0.1:PORT:GUESTPORT` (nftables
#      DNAT on a kiln network, qemu's hostfwd on user networking): the same
#      figures, from the host to B;
#   3. guest to guest on a socket network (`--mode socket`, the kind that
#      needs no root: qemu's multicast socket on loopback), A reaching B by
#      name through the hosts file kiln keeps; the host has no side of it.
# All pairs run under qemu (--backend qemu; TCG where KVM does not work), so
# that only the network differs, and both are up for the whole run: in
# ROUNDS rounds the pairs take turns, the other one paused (`kiln pause`:
# it takes no CPU), so that a change in the machine's load shows in every
# side's figures, not in their ratios. A round is a MiB each way untimed,
# then one transfer each way, PINGS round trips and CONNECTS connections;
# the figures are medians over all rounds. Every figure is measured by the
# same small perl program at both ends (bench/lib/netbench.pl: the image has
# no iperf3, python or nc, but perl-base), inside the guest for
# guest-to-guest figures, so `kiln exec` adds nothing to them; a transfer
# counts once the receiver has counted every byte, and a name is looked up
# once, before any timing. For information, ICMP ping from A to B on the
# kiln network (user networking has no route between guests). Ratios are
# kiln's against user networking's: for throughput kiln/user, for latency
# user/kiln ("quicker"); above 1 kiln's network is the better. Benchmarks
# report; they do not assert.
#
# kiln networks need root (a bridge, an nftables table, dnsmasq): run as
# another user, the benchmark says it is skipped and exits 0. The network
# (named kbenchPID, on a free 10.78.N.0/24 unless SUBNET says) and the
# instances live in a private state root; all of it is removed on exit,
# Ctrl-C included.
#
# Usage: sudo bench/network.sh [IMAGE-DIR]   (a `kiln bake` output with the
#          exec agent; default run-all's shared bake, BENCH_IMAGE, else the
#          default recipe baked here first, untimed, through BENCH_CACHE if
#          set)
# Environment: KILN=path/to/kiln (default build/kiln), SIZE_MIB (default 32),
#   ROUNDS (default 3), PINGS (default 30 a round), CONNECTS (default 10 a
#   round), SUBNET=10.x.y.0/24 for the kiln network, TMPDIR for scratch
#   space, BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
size_mib=${SIZE_MIB:-32}
rounds=${ROUNDS:-3}
pings=${PINGS:-30}
connects=${CONNECTS:-10}

die() { echo "network: $*" >&2; exit 2; }
if [[ $(id -u) -ne 0 ]]; then
  bench_summary_line "network: skipped (not root: a kiln network is a host bridge, an nftables table and a dnsmasq; run it with sudo)"
  exit 0
fi
for setting in "SIZE_MIB=$size_mib" "ROUNDS=$rounds" "PINGS=$pings" "CONNECTS=$connects"; do
  [[ ${setting#*=} =~ ^[1-9][0-9]*$ ]] || die "$setting: expected a positive integer"
done
[[ -x $kiln_source ]] || die "$kiln_source: not built (run make)"
for tool in python3 perl ip nft dnsmasq qemu-system-x86_64; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-network.XXXXXX")
# The network's dnsmasq runs as nobody and reads its hosts file (the
# instances' names) from the state root again on every join: through a 0700
# directory it cannot, and no name resolves.
chmod 711 "$work"
if command -v runuser >/dev/null && ! runuser -u nobody -- test -x "$work" 2>/dev/null; then
  rm -rf -- "$work"
  die "user nobody (the network's dnsmasq) cannot reach $work: set TMPDIR to a directory every user can reach"
fi
export KILN_RUNTIME_DIR=$work/run KILN_STATE_DIR=$work/state
kiln=$work/bin/kiln
net=kbench$$  # a host bridge's name: at most 15 characters
snet=ksock$$
net_made=0 snet_made=0 boot_pid=""
cleanup() {
  # A boot still running in the background (Ctrl-C during the boots).
  if [[ -n $boot_pid ]]; then kill -TERM "$boot_pid" 2>/dev/null || true; wait "$boot_pid" 2>/dev/null || true; fi
  if [[ -x $kiln ]]; then
    bench_destroy_instances "$kiln"
    if (( net_made )) && ! "$kiln" network rm "$net" >/dev/null 2>"$work/rm.err"; then
      echo "network: kiln network rm $net failed, its bridge, nftables table kiln-$net or dnsmasq may be left:" >&2
      cat "$work/rm.err" >&2
    fi
    if (( snet_made )); then "$kiln" network rm "$snet" >/dev/null 2>&1 || true; fi
  fi
  rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT
trap 'echo; echo "network: interrupted" >&2; exit 130' INT TERM
bench_copy_kiln "$kiln_source" "$work/bin" >/dev/null || exit 2
# The guests' copy and the host's: the same program at both ends.
cp -- "$here/bench/lib/netbench.pl" "$work/netbench.pl"
netbench=$work/netbench.pl

image_dir=$(bench_image_dir network "$kiln" "$work" "$image_dir") || exit 2

range() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
ms() { awk -v v="$1" 'BEGIN { printf (v < 10 ? "%.2f" : "%.1f"), v }'; }
mbit() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# A /24 that overlaps nothing the host routes or has an address on (another
# state root's kiln networks included): 10.78.N.0/24 from a start of the pid's.
pick_subnet() {
  python3 - "$$" <<'PY'
import ipaddress, json, subprocess, sys
used = []
for r in json.loads(subprocess.check_output(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
    dst = r.get("dst", "default")
    if dst != "default" and not dst.startswith(("127.", "224.", "255.")):
        used.append(ipaddress.ip_network(dst, strict=False))
for link in json.loads(subprocess.check_output(["ip", "-j", "-4", "addr"]) or "[]"):
    for a in link.get("addr_info", []):
        used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
start = int(sys.argv[1]) % 250
for i in range(250):
    candidate = ipaddress.ip_network(f"10.78.{(start + i) % 250}.0/24")
    if not any(candidate.overlaps(u) for u in used):
        print(candidate)
        break
else:
    sys.exit("every 10.78.N.0/24 is in use on this host: set SUBNET")
PY
}

# Boots A and B at once, as a person with two terminals would, on NET (a kiln
# network or user), each with netbench.pl in /root; B with the extra flags.
boot_pair() {  # A B NET [B's flags...]
  local a=$1 b=$2 on=$3 start=$EPOCHREALTIME
  shift 3
  local boot=("$kiln" boot "$image_dir" --backend qemu --net "$on" --detach --wait-ready=300 --json
              --file "$netbench:/root/netbench.pl")
  "${boot[@]}" --name "$a" >"$work/$a.json" 2>"$work/$a.err" &
  boot_pid=$!
  local rc=0
  "${boot[@]}" --name "$b" "$@" >"$work/$b.json" 2>"$work/$b.err" || rc=$?
  (( rc == 130 )) && { echo; echo "network: interrupted" >&2; exit 130; }
  (( rc == 0 )) || { cat "$work/$b.err" >&2; die "$b: kiln boot failed"; }
  wait "$boot_pid" || rc=$?
  boot_pid=""
  (( rc == 130 )) && { echo; echo "network: interrupted" >&2; exit 130; }
  (( rc == 0 )) || { cat "$work/$a.err" >&2; die "$a: kiln boot failed"; }
  echo "$a and $b booted at once: ready in $(bench_json_field ready_seconds <"$work/$a.json") s and" \
    "$(bench_json_field ready_seconds <"$work/$b.json") s ($(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s in all)"
  # Untimed: the boot's last jobs (ready comes at multi-user.target; after it
  # the image makes its RSA host key) would take CPU from the timings.
  start=$EPOCHREALTIME
  local states=()
  for name in "$a" "$b"; do
    states+=("$("$kiln" exec "$name" --timeout 180 -- systemctl is-system-running --wait </dev/null 2>&1 | tail -n 1)")
  done
  echo "boot jobs done $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s later" \
    "(systemctl is-system-running --wait: $a ${states[0]}, $b ${states[1]})"
}

# B's sink (5001) and echo server (5002); they detach once listening.
start_servers() {  # B
  "$kiln" exec "$1" -- sh -c 'perl /root/netbench.pl sink 5001 && perl /root/netbench.pl echo 5002' </dev/null ||
    die "$1: the guest's sink and echo server did not start"
}

pause_pair() {  # pause|unpause A B
  "$kiln" "$1" "$2" >/dev/null || die "kiln $1 $2 failed"
  "$kiln" "$1" "$3" >/dev/null || die "kiln $1 $3 failed"
}

# Each side: its pair, where A finds B's sink and echo server, and the host
# ports that reach them.
declare -A side_a side_b side_target side_p1 side_p2 side_h1 side_h2

# One round of one side's figures, appended to $work/SIDE-*.txt: from A to B
# and, where the host has a side (a published port), from the host to
# 127.0.0.1. The other sides' pairs are paused meanwhile.
round() {  # SIDE ROUND
  local side=$1 r=$2 a=${side_a[$1]} b=${side_b[$1]} target=${side_target[$1]}
  local p1=${side_p1[$1]} p2=${side_p2[$1]} h1=${side_h1[$1]} h2=${side_h2[$1]} out kind
  local gsend=("$kiln" exec "$a" --timeout 600 -- perl /root/netbench.pl)
  local hsend=(timeout 600 perl "$netbench")
  pause_pair unpause "$a" "$b"
  # Untimed: a first MiB each way, through whatever is set up on first use or
  # went stale while paused (neighbours, conntrack, slirp's sockets).
  "${gsend[@]}" send "$target" "$p1" 1 </dev/null >/dev/null || die "$side: $a cannot send to $target:$p1"
  out=$("${gsend[@]}" send "$target" "$p1" "$size_mib" </dev/null) || die "$side: $a -> $target:$p1 failed"
  awk '{ print $3 }' <<<"$out" >>"$work/$side-gg-mbit.txt"
  local gg=$out hg=""
  "${gsend[@]}" rtt "$target" "$p2" "$pings" </dev/null >"$work/round-gg-rtt.txt" || die "$side: $a round trips failed"
  "${gsend[@]}" connect "$target" "$p2" "$connects" </dev/null >"$work/round-gg-conn.txt" ||
    die "$side: $a connections failed"
  for kind in gg-rtt gg-conn; do cat "$work/round-$kind.txt" >>"$work/$side-$kind.txt"; done
  if [[ -n $h1 ]]; then
    "${hsend[@]}" send 127.0.0.1 "$h1" 1 >/dev/null || die "$side: the host cannot send to 127.0.0.1:$h1"
    out=$("${hsend[@]}" send 127.0.0.1 "$h1" "$size_mib") || die "$side: host -> 127.0.0.1:$h1 failed"
    awk '{ print $3 }' <<<"$out" >>"$work/$side-hg-mbit.txt"
    hg=$out
    "${hsend[@]}" rtt 127.0.0.1 "$h2" "$pings" >"$work/round-hg-rtt.txt" || die "$side: host round trips failed"
    "${hsend[@]}" connect 127.0.0.1 "$h2" "$connects" >"$work/round-hg-conn.txt" ||
      die "$side: host connections failed"
    for kind in hg-rtt hg-conn; do cat "$work/round-$kind.txt" >>"$work/$side-$kind.txt"; done
  fi
  if [[ $side == kiln ]]; then
    "$kiln" exec "$a" -- ping -c 10 -i 0.2 "$b" </dev/null >"$work/ping.txt" 2>&1 || true
    sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$work/ping.txt" >>"$work/ping-ms.txt"
  fi
  local host_part="| the host has no side of it"
  [[ -n $hg ]] && host_part=$(printf '| host -> %s: %s Mbit/s, rtt %s ms, connect+reply %s ms' "127.0.0.1:$h1" \
    "$(awk '{ printf "%.1f", $3 }' <<<"$hg")" "$(ms "$(bench_median <"$work/round-hg-rtt.txt")")" \
    "$(ms "$(bench_median <"$work/round-hg-conn.txt")")")
  printf '%-6s round %d  %s -> %s: %s Mbit/s, rtt %s ms, connect+reply %s ms %s\n' \
    "$side" "$r" "$a" "$target:$p1" "$(awk '{ printf "%.1f", $3 }' <<<"$gg")" "$(ms "$(bench_median <"$work/round-gg-rtt.txt")")" \
    "$(ms "$(bench_median <"$work/round-gg-conn.txt")")" "$host_part"
  pause_pair pause "$a" "$b"
}

bench_machine_before
echo "image: $image_dir"

# The kiln network's pair.
subnet=${SUBNET:-$(pick_subnet)} || die "no free subnet"
"$kiln" network create "$net" --subnet "$subnet" --json >"$work/net.json" 2>"$work/net.err" ||
  { cat "$work/net.err" >&2; die "kiln network create $net --subnet $subnet failed"; }
net_made=1
k1=$(free_port) k2=$(free_port)
echo "== kiln network $net ($subnet, $(bench_json_field mode <"$work/net.json")): ka and kb, --net $net --backend qemu;" \
  "kb's ports 5001 and 5002 published on 127.0.0.1:$k1 and :$k2 (nftables DNAT)"
boot_pair ka kb "$net" --publish "127.0.0.1:$k1:5001" --publish "127.0.0.1:$k2:5002"
label=$([[ $(bench_json_field kvm <"$work/ka.json") == True ]] && echo "qemu (KVM)" || echo "qemu (TCG)")
start_servers kb
# The network's DNS: kb by name, as ka uses it.
kb_address=$("$kiln" exec ka -- timeout 60 sh -c 'until getent ahostsv4 kb; do sleep 1; done' </dev/null |
  awk 'NR == 1 { print $1 }') || die "ka does not resolve kb by name after 60 s"
echo "ka resolves kb to $kb_address"
side_a[kiln]=ka side_b[kiln]=kb side_target[kiln]=kb side_p1[kiln]=5001 side_p2[kiln]=5002 side_h1[kiln]=$k1 side_h2[kiln]=$k2
# Paused, a qemu guest takes no CPU from the other pair's boot and figures.
pause_pair pause ka kb

# User networking's pair: A reaches B only through B's published port on the host.
u1=$(free_port) u2=$(free_port)
echo "== user networking: ua and ub, --net user --backend qemu; ub's ports 5001 and 5002 published on" \
  "127.0.0.1:$u1 and :$u2 (qemu hostfwd), which ua reaches at 10.0.2.2 (slirp's address of the host)"
boot_pair ua ub user --publish "127.0.0.1:$u1:5001" --publish "127.0.0.1:$u2:5002"
start_servers ub
side_a[user]=ua side_b[user]=ub side_target[user]=10.0.2.2 side_p1[user]=$u1 side_p2[user]=$u2 side_h1[user]=$u1 side_h2[user]=$u2
pause_pair pause ua ub

# The socket network's pair: no host side, so no published ports.
"$kiln" network create "$snet" --mode socket --json >"$work/snet.json" 2>"$work/snet.err" ||
  { cat "$work/snet.err" >&2; die "kiln network create $snet --mode socket failed"; }
snet_made=1
echo "== socket network $snet ($(bench_json_field subnet <"$work/snet.json"), multicast $(bench_json_field socket <"$work/snet.json")):" \
  "sa and sb, --net $snet --backend qemu"
boot_pair sa sb "$snet"
start_servers sb
sb_address=$("$kiln" exec sa -- timeout 60 sh -c 'until getent ahostsv4 sb; do sleep 1; done' </dev/null |
  awk 'NR == 1 { print $1 }') || die "sa does not resolve sb by name after 60 s"
echo "sa resolves sb to $sb_address (its hosts file)"
side_a[socket]=sa side_b[socket]=sb side_target[socket]=sb side_p1[socket]=5001 side_p2[socket]=5002
side_h1[socket]="" side_h2[socket]=""
pause_pair pause sa sb

sides=(kiln user socket)
echo "== $rounds rounds, the three pairs in turn (the others paused): $size_mib MiB guest->guest and host->guest," \
  "$pings round trips on one connection and $connects connections to a first reply each way (medians)"
for (( i = 1; i <= rounds; i++ )); do
  # Each round starts with another side.
  for (( j = 0; j < ${#sides[@]}; j++ )); do round "${sides[(i + j) % ${#sides[@]}]}" "$i"; done
done
echo "load now: $(load)"

# The summary: kiln's figures first, user networking's second.
figures() {  # PATH (gg or hg)
  local km um kr ur kc uc
  km=$(bench_median <"$work/kiln-$1-mbit.txt") um=$(bench_median <"$work/user-$1-mbit.txt")
  kr=$(bench_median <"$work/kiln-$1-rtt.txt") ur=$(bench_median <"$work/user-$1-rtt.txt")
  kc=$(bench_median <"$work/kiln-$1-conn.txt") uc=$(bench_median <"$work/user-$1-conn.txt")
  echo "kiln network $(mbit "$km") Mbit/s, user $(mbit "$um") Mbit/s (kiln $(bench_ratio "$km" "$um"));" \
    "round trip $(ms "$kr") ms vs $(ms "$ur") ms (kiln $(bench_ratio "$ur" "$kr") quicker);" \
    "connect+reply $(ms "$kc") ms vs $(ms "$uc") ms (kiln $(bench_ratio "$uc" "$kc") quicker)"
}
if [[ -s $work/ping-ms.txt ]]; then
  ping_line="ICMP ping ka -> kb on the kiln network: median $(ms "$(bench_median <"$work/ping-ms.txt")") ms, range $(range <"$work/ping-ms.txt") ms ($(wc -l <"$work/ping-ms.txt") replies; user networking has no route between guests)"
else
  ping_line="ICMP ping ka -> kb on the kiln network: no reply ($(tail -n 1 "$work/ping.txt"))"
fi
echo
bench_summary_line "guest->guest TCP, $label, $size_mib MiB x $rounds, medians; user = through a host port: $(figures gg)"
bench_summary_line "host->guest TCP via --publish, $label, medians: $(figures hg)"
bench_summary_line "$ping_line"
sm=$(bench_median <"$work/socket-gg-mbit.txt") um=$(bench_median <"$work/user-gg-mbit.txt")
sr=$(bench_median <"$work/socket-gg-rtt.txt") ur=$(bench_median <"$work/user-gg-rtt.txt")
socket_line="guest->guest TCP on a socket network (no root), $label, medians: socket $(mbit "$sm") Mbit/s,"
socket_line+=" user $(mbit "$um") Mbit/s (socket $(bench_ratio "$sm" "$um")); round trip $(ms "$sr") ms vs $(ms "$ur") ms"
socket_line+=" (socket $(bench_ratio "$ur" "$sr") quicker)"
bench_summary_line "$socket_line"
bench_machine_after
