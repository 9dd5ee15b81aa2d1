#!/usr/bin/env bash
# Times re-baking the default recipe (recipes/debian-12-minimal.toml) after a
# change of hostname only, in one run, two ways:
#   kiln            build/kiln bake --cache DIR --set customize.hostname=web-N,
#                   with the stage cache filled by one untimed bake first
#                   (target: under 2 s)
#   virt-customize  what a user does without kiln's stage cache: copy the
#                   previous disk image, then virt-customize --hostname on the
#                   copy (libguestfs; its first run, which builds the
#                   appliance, is untimed). Where qemu cannot use KVM it runs
#                   with LIBGUESTFS_BACKEND_SETTINGS=force_tcg; on a host with
#                   no kernel of its own (a container) its appliance boots the
#                   kernel kiln baked. When it cannot run at all, a cold bake
#                   (kiln --no-cache) stands in for it, and the reason is shown.
# and prints each kiln run with its per-stage breakdown (from --json), the
# median, and the other way's time with its ratio to kiln's median. Each result
# is checked outside the timings: e2fsck -fn of the root filesystem, and
# /etc/hostname must hold the new name. Temporaries (about 4 GiB) are removed
# on exit, Ctrl-C included.
#
# Usage: sudo bench/warm_rebake.sh
# Environment: KILN=path/to/kiln (default build/kiln), RUNS=N timed re-bakes
#   (default 3), TMPDIR for scratch space, BENCH_CACHE=DIR to fill and keep a
#   stage cache there instead of a temporary one (bench/run-all.sh hands its
#   bootstrap tarball to tar_to_ext4.sh), BENCH_SUMMARY=FILE to append the
#   summary lines to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
kiln=${KILN:-$here/build/kiln}
recipe=$here/recipes/debian-12-minimal.toml
runs=${RUNS:-3}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

die() { echo "warm_rebake: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: the bake that fills the cache runs mmdebstrap as root"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
command -v e2fsck >/dev/null || die "e2fsck not found (Debian package e2fsprogs)"
command -v debugfs >/dev/null || die "debugfs not found (Debian package e2fsprogs)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-rebake.XXXXXX")
cleanup() { rm -rf --one-file-system -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "warm_rebake: interrupted" >&2; exit 130' INT TERM
# The build directory may be shared: a rebuild during the run must neither
# change nor break the binary under test.
kiln=$(bench_copy_kiln "$kiln" "$work/bin") || exit 2
cache=${BENCH_CACHE:-$work/cache}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
summary() {
  echo "$1"
  if [[ -n ${BENCH_SUMMARY:-} ]]; then echo "$1" >>"$BENCH_SUMMARY"; fi
}

# "bootstrap 0.00 s cached, assemble 1.71 s, ..." from the result event of
# `kiln bake --json`, whose stages list says which came from the cache.
stage_breakdown() {
  grep '"event":"result"' "$1" |
    grep -o '{"cached":[a-z]*,"key":"[^"]*","name":"[a-z]*","seconds":[0-9.eE+-]*}' |
    sed 's/{"cached":\([a-z]*\),"key":"[^"]*","name":"\([a-z]*\)","seconds":\([^}]*\)}/\2 \3 \1/' |
    awk '{ printf "%s%s %.2f s%s", sep, $1, $2, ($3 == "true" ? " cached" : ""); sep = ", " }'
}

# Checks the root filesystem FILE (at byte OFFSET) and that it is named NAME.
check() {
  local fs="$1?offset=$2" name
  if ! e2fsck -fn "$fs" >"$work/fsck.log" 2>&1; then
    echo "warm_rebake: $4 made a root filesystem that fails e2fsck:" >&2
    tail -n 20 "$work/fsck.log" >&2
    exit 1
  fi
  name=$(debugfs -R 'cat /etc/hostname' "$fs" 2>/dev/null)
  [[ $name == "$3" ]] || { echo "warm_rebake: $4 left /etc/hostname as '$name', not '$3'" >&2; exit 1; }
}

bake() { "$kiln" bake "$recipe" -o "$work/out" "$@" --json >"$work/bake.json"; }

bench_machine_before
echo "filling the stage cache $cache (untimed bake)"
bake --cache "$cache"
mkdir "$work/base"
cp --sparse=always "$work/out/disk.raw" "$work/base/disk.raw"
# The root filesystem's offset in disk.raw.
read -r _ root_offset _ < <(bench_root_partition "$work/out") ||
  { echo "warm_rebake: no root partition in $work/out/manifest.json" >&2; exit 1; }

# libguestfs boots a small appliance VM that supermin builds from the host's
# kernel. A host without one (a container) lends it the kernel kiln baked,
# with its modules; supermin then still reads the host's /lib/modules, which a
# private mount namespace adds (an empty overlay) without touching the host.
guestfs_env=(LIBGUESTFS_CACHEDIR="$work/guestfs" TMPDIR="$work")
guestfs_lib="" lent=""
if command -v virt-customize >/dev/null && ! compgen -G '/boot/vmlinuz-*' >/dev/null &&
   ! compgen -G '/lib/modules/*/vmlinuz' >/dev/null; then
  kver=$(sed -n 's/^ *"kernel": "\([^"]*\)".*/\1/p' "$work/out/manifest.json")
  cp "$work/out/vmlinuz" "$work/base/vmlinuz"
  debugfs -R "rdump /usr/lib/modules/$kver $work/base" "$(bench_root_fs "$work/out")" 2>/dev/null
  [[ -d $work/base/$kver ]] || { echo "warm_rebake: no modules for kernel '$kver' in the baked image" >&2; exit 1; }
  guestfs_env+=(SUPERMIN_KERNEL="$work/base/vmlinuz" SUPERMIN_MODULES="$work/base/$kver")
  [[ -d /lib/modules ]] || guestfs_lib=$(readlink -f /lib)
  lent=" on the baked kernel $kver: this host has none"
fi
mkdir -p "$work/guestfs"
virt_customize() {  # IMAGE HOSTNAME [OPTIONS...]
  local image=$1 name=$2
  shift 2
  local args=(--no-network "$@" --format raw -a "$image" --hostname "$name")
  if [[ -n $guestfs_lib ]]; then
    mkdir -p "$work/lib/upper/modules" "$work/lib/work"
    env "${guestfs_env[@]}" unshare --mount --propagation private sh -c \
      'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$1" &&
       shift 2 && exec virt-customize "$@"' sh "$guestfs_lib" "$work/lib" "${args[@]}"
  else
    env "${guestfs_env[@]}" virt-customize "${args[@]}"
  fi
}
rm -rf --one-file-system -- "$work/out"

kiln_times=()
for (( run = 1; run <= runs; run++ )); do
  name=web-$RANDOM
  bench_settle
  start=$(now_ms)
  bake --cache "$cache" --set "customize.hostname=$name"
  ms=$(( $(now_ms) - start ))
  check "$work/out/disk.raw" "$root_offset" "$name" kiln
  echo "  kiln run $run ($name): $(seconds "$ms") s ($(stage_breakdown "$work/bake.json"))"
  kiln_times+=("$ms")
done
kiln_ms=$(median "${kiln_times[@]}")
rm -rf --one-file-system -- "$work/out"

# The reason a libguestfs run failed: qemu's own complaint when there is one.
guestfs_failure() {
  { grep -m 1 '^qemu-system[^:]*: ' "$1" || grep -v '^\s*$' "$1" | grep -m 1 -i error || tail -n 1 "$1"; } | cut -c1-160
}

other="" other_ms="" why=""
if ! command -v virt-customize >/dev/null; then
  why="not installed; Debian package libguestfs-tools"
else
  # Untimed, as kiln's cache was filled untimed: the first run builds
  # libguestfs's appliance. It also finds out whether qemu can use KVM here;
  # when it cannot, libguestfs is told to emulate (TCG), and the reason shown.
  cp --sparse=always "$work/base/disk.raw" "$work/copy.raw"
  echo "virt-customize: untimed first run (builds the libguestfs appliance$lent)"
  if ! virt_customize "$work/copy.raw" web-warm -v -x >"$work/virt.log" 2>&1 &&
     [[ -z ${LIBGUESTFS_BACKEND_SETTINGS:-} ]]; then
    echo "virt-customize: without KVM (LIBGUESTFS_BACKEND_SETTINGS=force_tcg): $(guestfs_failure "$work/virt.log")"
    guestfs_env+=(LIBGUESTFS_BACKEND_SETTINGS=force_tcg)
    virt_customize "$work/copy.raw" web-warm -v -x >"$work/virt.log" 2>&1 || true
  fi
  if debugfs -R 'cat /etc/hostname' "$work/copy.raw?offset=$root_offset" 2>/dev/null | grep -qx web-warm; then
    name=web-$RANDOM
    bench_settle
    start=$(now_ms)
    cp --sparse=always "$work/base/disk.raw" "$work/copy.raw"
    copy_ms=$(( $(now_ms) - start ))
    if virt_customize "$work/copy.raw" "$name" >"$work/virt.log" 2>&1; then
      other_ms=$(( $(now_ms) - start ))
      check "$work/copy.raw" "$root_offset" "$name" virt-customize
      other="virt-customize: cp $(seconds "$copy_ms") s + virt-customize --hostname $(seconds $(( other_ms - copy_ms ))) s ="
    else
      why="it failed here: $(guestfs_failure "$work/virt.log")"
    fi
  else
    why="it failed here: $(guestfs_failure "$work/virt.log")"
  fi
  rm -rf --one-file-system -- "$work/copy.raw" "$work/guestfs"
fi
if [[ -z $other ]]; then
  echo "virt-customize: skipped ($why); a cold bake stands in for it"
  name=web-$RANDOM
  bench_settle
  start=$(now_ms)
  bake --no-cache --set "customize.hostname=$name"
  other_ms=$(( $(now_ms) - start ))
  check "$work/out/disk.raw" "$root_offset" "$name" "kiln --no-cache"
  other="cold bake (kiln --no-cache: $(stage_breakdown "$work/bake.json"))"
fi

bench_machine_after
summary "kiln warm re-bake, new hostname: median $(seconds "$kiln_ms") s of $runs (target < 2 s)"
summary "$other $(seconds "$other_ms") s, $(bench_ratio "$other_ms" "$kiln_ms") kiln's median"
