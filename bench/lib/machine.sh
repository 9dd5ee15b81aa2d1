# shellcheck shell=bash
# Sourced by every benchmark: what would explain a difference between two
# machines' figures, printed with them.
#
#   bench_machine_before   the CPU model and count, memory, whether KVM
#                          works (qemu run for 3 s with -accel kvm -cpu host:
#                          some hosts have a /dev/kvm on which it aborts),
#                          whether UML is there, what a system call, a
#                          context switch and a process cost (host_costs.c),
#                          and the load;
#   bench_machine_after    the load again: a busy neighbour shows as a rise.
#   bench_settle           writes out what earlier runs left in the page
#                          cache (sync), untimed, before a timed run;
#   bench_summary_line     prints a line and, when $BENCH_SUMMARY is set,
#                          appends it there: run-all's table shows the
#                          machine and load lines beside the figures.
# and what several benchmarks share: a private copy of kiln, the image
# they run, medians, ratios, JSON fields, libvirtd for the run.

bench_kvm_state() {
  [[ -e /dev/kvm ]] || { echo "absent (no /dev/kvm): qemu runs TCG"; return; }
  command -v qemu-system-x86_64 >/dev/null || { echo "/dev/kvm present, qemu not installed"; return; }
  local err rc
  # -cpu host, as kiln's own probe and its KVM boots use: with qemu's default
  # CPU model a broken host runs fine, and only -cpu host aborts.
  err=$(timeout 3 qemu-system-x86_64 -accel kvm -cpu host -nodefaults -display none -monitor none -serial none \
    2>&1 >/dev/null)
  rc=$?
  if (( rc == 124 )); then echo "works (qemu -accel kvm -cpu host ran 3 s)"; return; fi
  echo "present but qemu fails on it (exit $rc: $(grep -v warning <<<"$err" | head -n 1)): qemu runs TCG"
}

# Compiles and runs bench/lib/host_costs.c (about a second).
bench_host_costs() {
  local dir rc=0
  command -v cc >/dev/null || { echo "host costs: not measured (no C compiler; Debian package gcc)"; return; }
  dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-costs.XXXXXX")
  if cc -O2 -o "$dir/host_costs" "$(dirname -- "${BASH_SOURCE[0]}")/host_costs.c" 2>"$dir/cc.log"; then
    "$dir/host_costs" || rc=$?
    (( rc == 0 )) || echo "host costs: not measured (host_costs exited $rc)"
  else
    echo "host costs: not measured (cc failed: $(head -n 1 "$dir/cc.log"))"
  fi
  rm -rf -- "$dir"
}

# The machine does not change during a run: run-all describes it once
# (the KVM check runs qemu for 3 s) and exports the line to each benchmark.
bench_machine_before() {
  if [[ -z ${BENCH_MACHINE:-} ]]; then
    local cpu cores mem uml
    cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
    cores=$(nproc)
    mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    uml=$(command -v linux.uml >/dev/null && echo "linux.uml installed" || echo "no linux.uml")
    BENCH_MACHINE="machine: ${cpu:-unknown CPU}, $cores cores, $mem; KVM: $(bench_kvm_state); $uml; $(bench_host_costs)"
    export BENCH_MACHINE
  fi
  bench_summary_line "$BENCH_MACHINE"
  bench_summary_line "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# A bake writes about a gigabyte. Left dirty, the previous run's pages are
# written back during the next one, which then pays for both: seen, the same
# warm bake at 2.6 s and 4.4 s, and two recipes' ratio swinging with the
# order they ran in.
bench_settle() { sync; }

bench_machine_after() { bench_summary_line "load after: $(cut -d' ' -f1-3 /proc/loadavg)"; }

# Destroys every instance KILN lists (the benchmark's own: its
# KILN_RUNTIME_DIR and KILN_STATE_DIR are private), for its cleanup.
bench_destroy_instances() {  # KILN
  local name
  for name in $("$1" list --json 2>/dev/null | python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)]' 2>/dev/null); do
    "$1" destroy "$name" >/dev/null 2>&1 || true
  done
}

bench_summary_line() {
  echo "$1"
  if [[ -n ${BENCH_SUMMARY:-} ]]; then echo "$1" >>"$BENCH_SUMMARY"; fi
}

# A private copy of kiln, and of the exec agents a bake puts in every image
# (found beside kiln: its own architecture's and the cross-built ones), in
# DIR: a rebuild during the run must neither change nor break the binary
# under test. Prints the copy's path.
bench_copy_kiln() {
  local source=$1 dir=$2 agent
  agent=$(dirname -- "$source")/kiln-exec-agent
  [[ -x $agent ]] || { echo "bench: $agent: missing; build it with make" >&2; return 2; }
  mkdir -p -- "$dir"
  cp -- "$source" "$dir/kiln"
  cp -- "$agent"* "$dir/"
  echo "$dir/kiln"
}

# The median of the numbers on stdin, one per line (of an even count, the
# mean of the middle two).
bench_median() {
  sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Field NAME of the JSON object on stdin's last line ("" when it has none):
# kiln's --json outcome.
bench_json_field() {
  python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1]).get('$1', ''))"
}
# The image a benchmark runs, as an absolute path: DIR (its argument, or
# $BENCH_IMAGE), or without one the default recipe baked with KILN into
# WORK/image, untimed (through $BENCH_CACHE when set). It must be a `kiln
# bake` output, with its disk.raw.
bench_image_dir() {  # BENCHMARK KILN WORK [DIR]
  local name=$1 kiln=$2 work=$3 dir=${4:-} root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [[ -z $dir ]]; then
    echo "$name: baking recipes/debian-12-minimal.toml (untimed)" >&2
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000} "$kiln" bake "$root/recipes/debian-12-minimal.toml" \
      -o "$work/image" --cache "${BENCH_CACHE:-$work/cache}" >/dev/null || return 2
    dir=$work/image
  fi
  [[ -f $dir/disk.raw ]] || { echo "$name: $dir: no disk.raw; give a \`kiln bake\` output" >&2; return 2; }
  (cd "$dir" && pwd)
}
# The Debian mirror kiln bakes from (builder/apt_sources.cc): the host's
# own, for its release, as apt knows it; else deb.debian.org.
bench_debian_mirror() {
  local codename mirror
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  mirror=$(apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' 2>/dev/null |
           awk -v c="$codename" '$1 == "deb" && $2 == c { sub("/$", "", $3); print $3; exit }')
  echo "${mirror:-http://deb.debian.org/debian}"
}
# A / B as "N.NNx".
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

# libvirtd and virtlogd for the benchmark's life: the running ones, or ones
# it starts (their pid files in /run), listed in bench_started_daemons for
# bench_libvirtd_down to stop.
bench_started_daemons=()
bench_libvirtd_up() {  # URI
  virsh -c "$1" version >/dev/null 2>&1 && return 0
  local daemon
  for daemon in virtlogd libvirtd; do "$daemon" --daemon && bench_started_daemons+=("$daemon"); done
  for _ in $(seq 150); do virsh -c "$1" version >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "bench: libvirtd did not come up" >&2
  return 2
}
bench_libvirtd_down() {
  local daemon
  for daemon in "${bench_started_daemons[@]}"; do
    [[ -f /run/$daemon.pid ]] && kill "$(cat "/run/$daemon.pid")" 2>/dev/null || true
  done
}
