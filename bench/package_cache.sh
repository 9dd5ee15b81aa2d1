#!/usr/bin/env bash
# Times a cold bake (no cached bootstrap stage) of the default recipe plus one
# extra package, with kiln's package cache warm from a bake of the default
# recipe, against what a user would otherwise run: the same mmdebstrap call
# without a cache, into a directory, then mke2fs -t ext4 -d of it into an image
# of the size of kiln's root filesystem. In one run, ROUNDS pairs in
# alternating order; prints medians and kiln/floor (target: at most 0.5x).
#
# kiln's gain has two sources, reported apart so that neither hides in the
# other: the package cache (nothing fetched but the extra package, and the
# index) and the tree built on a tmpfs (dpkg's fsyncs cost nothing there;
# builder/bootstrap.cc, memory_workspace). A third, untimed-for-the-ratio
# line runs the same mmdebstrap with TMPDIR on /dev/shm: what the tmpfs alone
# gives a user who knows the trick.
#
# Checked outside the timings: e2fsck -fn of both images; kiln's bake reports
# that the cache gave it every package of the warm-up bake and that it kept
# only what it fetched; both installed the same packages.
#
# Usage: sudo bench/package_cache.sh
# Environment: KILN=path/to/kiln (default build/kiln), ROUNDS=N (default 1),
#   EXTRA=package (default tree), TMPDIR for scratch space (about 4 GiB),
#   BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
kiln=${KILN:-$here/build/kiln}
rounds=${ROUNDS:-1}
extra=${EXTRA:-tree}
epoch=${SOURCE_DATE_EPOCH:-1700000000}

die() { echo "package_cache: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: mmdebstrap needs it here"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$rounds: expected a positive integer"
[[ $extra =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || die "EXTRA=$extra: not a Debian package name"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
for tool in mmdebstrap mke2fs e2fsck unshare dpkg-query; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

# The default recipe's bootstrap (recipes/debian-12-minimal.toml and
# builder/bootstrap.cc), from the host's mirror (builder/apt_sources.cc).
suite=bookworm
packages=systemd-sysv,udev,dbus,openssh-server,iproute2,iputils-ping,systemd-resolved,linux-image-amd64
mirror=$(bench_debian_mirror)
mmdebstrap_args=(--variant=minbase --architectures=amd64 --components=main
                 '--aptopt=Acquire::Retries "3"' "--include=$packages,$extra")
tool_env=(LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH="$epoch")

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-packages.XXXXXX")
cleanup() { rm -rf --one-file-system -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "package_cache: interrupted" >&2; exit 130' INT TERM
kiln=$(bench_copy_kiln "$kiln" "$work/bin") || exit 2

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
private() { unshare --mount --propagation private "$@"; }
fsck_or_fail() {
  e2fsck -fn "$1" >"$work/fsck.log" 2>&1 && return 0
  echo "package_cache: $2 made an image that fails e2fsck:" >&2
  tail -n 20 "$work/fsck.log" >&2
  exit 1
}
# The "took N" / "kept N" notes kiln's package-cache hooks print.
cache_note() { grep -o "\"message\":\"$1 [0-9]* .deb files[^\"]*\"" "$2" | sed 's/"message":"//; s/"$//'; }

# The recipe with the extra package: the same file, one more entry.
sed "s/\"systemd-resolved\",/\"systemd-resolved\", \"$extra\",/" "$here/recipes/debian-12-minimal.toml" \
  >"$work/recipe.toml"
grep -q "\"$extra\"" "$work/recipe.toml" || die "could not add $extra to the default recipe's packages"

echo "recipe: recipes/debian-12-minimal.toml + $extra, mirror $mirror, SOURCE_DATE_EPOCH=$epoch"
bench_machine_before
echo "warm-up: kiln bake of the default recipe, filling the package cache (untimed)"
SOURCE_DATE_EPOCH=$epoch "$kiln" bake "$here/recipes/debian-12-minimal.toml" -o "$work/warm" \
  --cache "$work/cache" --json >"$work/warm.json"
warm_kept=$(cache_note kept "$work/warm.json")
echo "  $warm_kept"
rm -rf --one-file-system -- "$work/warm"

root_bytes=""
kiln_times=() floor_times=()
run_kiln() {
  local start ms
  # The stages go, the packages stay: the bootstrap of the new package set
  # runs in full, as a first bake of a new recipe does.
  rm -rf --one-file-system -- "$work/cache/entries"
  bench_settle
  start=$(now_ms)
  SOURCE_DATE_EPOCH=$epoch "$kiln" bake "$work/recipe.toml" -o "$work/kiln" --cache "$work/cache" --json \
    >"$work/kiln.json"
  ms=$(( $(now_ms) - start ))
  fsck_or_fail "$(bench_root_fs "$work/kiln")" kiln
  read -r _ _ root_bytes < <(bench_root_partition "$work/kiln")
  echo "  kiln $(seconds "$ms") s ($(cache_note took "$work/kiln.json"); $(cache_note kept "$work/kiln.json"))"
  python3 -c "import json,sys; print('\n'.join(sorted(p['name'] for p in json.load(open(sys.argv[1]))['packages'])))" \
    "$work/kiln/manifest.json" >"$work/kiln.packages"
  rm -rf --one-file-system -- "$work/kiln"
  kiln_times+=("$ms")
}
run_floor() {  # TMPDIR for mmdebstrap
  local start boot_ms mkfs_ms
  bench_settle
  start=$(now_ms)
  private env "${tool_env[@]}" TMPDIR="$1" mmdebstrap -q "${mmdebstrap_args[@]}" --format=directory \
    "$suite" "$work/tree" "$mirror"
  boot_ms=$(( $(now_ms) - start ))
  truncate -s "$root_bytes" "$work/floor.img"
  start=$(now_ms)
  mke2fs -q -F -t ext4 -L root -d "$work/tree" "$work/floor.img"
  mkfs_ms=$(( $(now_ms) - start ))
  fsck_or_fail "$work/floor.img" "mmdebstrap + mke2fs -d"
  dpkg-query --admindir="$work/tree/var/lib/dpkg" -W -f='${db:Status-Status} ${Package}\n' |
    awk '$1 == "installed" { print $2 }' | sort >"$work/floor.packages"
  if ! diff -u "$work/kiln.packages" "$work/floor.packages" >"$work/packages.diff"; then
    echo "package_cache: mmdebstrap installed other packages than kiln (- kiln, + mmdebstrap):" >&2
    grep '^[-+][^-+]' "$work/packages.diff" >&2
    exit 1
  fi
  rm -rf --one-file-system -- "$work/tree" "$work/floor.img"
  floor_last_ms=$(( boot_ms + mkfs_ms ))
  echo "  mmdebstrap (TMPDIR=$1) + mke2fs -d: $(seconds "$floor_last_ms") s (mmdebstrap $(seconds "$boot_ms") s)"
}

for (( round = 1; round <= rounds; round++ )); do
  echo "round $round of $rounds"
  # kiln goes first in odd rounds: the floor needs its root filesystem size.
  if (( round % 2 )); then
    run_kiln; run_floor "$work"; floor_times+=("$floor_last_ms")
  else
    run_floor "$work"; floor_times+=("$floor_last_ms"); run_kiln
  fi
done
echo "for comparison: the same mmdebstrap with its tree on /dev/shm (no package cache)"
run_floor /dev/shm
shm_ms=$floor_last_ms

bench_machine_after
kiln_ms=$(printf '%s\n' "${kiln_times[@]}" | bench_median)
floor_ms=$(printf '%s\n' "${floor_times[@]}" | bench_median)
if (( rounds > 1 )); then echo "medians of $rounds rounds:"; fi
bench_summary_line "cold bake + $extra, package cache warm: kiln $(seconds "$kiln_ms") s, mmdebstrap + mke2fs -d $(seconds "$floor_ms") s, kiln/that $(bench_ratio "$kiln_ms" "$floor_ms") (target <= 0.5x); mmdebstrap on /dev/shm + mke2fs -d $(seconds "$shm_ms") s"
