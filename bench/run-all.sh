#!/usr/bin/env bash
# Runs every benchmark in bench/ (each executable *.sh but this one; the
# helpers they share are in bench/lib/), in one go, and ends with a table of
# their summary lines: what a benchmark appended to the file named by
# $BENCH_SUMMARY (with the machine and the load, bench/lib/machine.sh), else
# its last line of output. A benchmark that fails is marked so in the table
# and the others still run; the exit status is 1 when any failed.
#
# First, untimed, one bake of the default recipe fills a stage cache that
# every benchmark may share (BENCH_CACHE) and leaves the image every
# benchmark that needs one starts from (BENCH_IMAGE): tar_to_ext4.sh gets the
# bootstrap stage's rootfs.tar from the cache as its tarball. Nothing comes
# from the tests' build directories. Temporaries are removed on exit, Ctrl-C
# included.
#
# Usage: sudo bench/run-all.sh        (make bench)
# Environment: KILN=path/to/kiln (default build/kiln), TMPDIR for scratch space,
#   BENCH_ONLY="boot publish" to run only those; the benchmarks' own settings
#   (ROUNDS, RUNS, WARMUP, XEN, ...) pass through.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KILN=${KILN:-$here/build/kiln}
self=$(basename "${BASH_SOURCE[0]}")
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"

die() { echo "run-all: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: the benchmarks run mmdebstrap and image tools as root"
[[ -x $KILN ]] || die "$KILN: missing; build it with make"

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-all.XXXXXX")
cleanup() { rm -rf --one-file-system -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "run-all: interrupted" >&2; exit 130' INT TERM
# The build directory may be shared: a rebuild during the run must neither
# change nor break the binary under test.
KILN=$(bench_copy_kiln "$KILN" "$work/bin") || exit 2

bench_machine_before
echo "run-all: filling a shared stage cache (untimed bake of recipes/debian-12-minimal.toml)"
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000} "$KILN" bake "$here/recipes/debian-12-minimal.toml" \
  -o "$work/default" --cache "$work/cache" >/dev/null
export BENCH_IMAGE=$work/default
tarballs=("$work"/cache/entries/*/rootfs.tar)
[[ -f ${tarballs[0]} ]] || die "the bake left no rootfs.tar in $work/cache/entries"

names=() failed=0
for script in "$here"/bench/*.sh; do
  name=$(basename "$script" .sh)
  [[ $name.sh == "$self" || ! -x $script ]] && continue
  [[ -n ${BENCH_ONLY:-} && " $BENCH_ONLY " != *" $name "* ]] && continue
  args=()
  [[ $name == tar_to_ext4 ]] && args=("${tarballs[0]}")
  names+=("$name")
  echo
  echo "=== $name"
  : >"$work/$name.summary"
  set +e
  BENCH_SUMMARY=$work/$name.summary BENCH_CACHE=$work/cache "$script" "${args[@]}" 2>&1 |
    tee "$work/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  (( rc == 130 )) && exit 130
  if (( rc != 0 )); then
    # Its own last complaint ("NAME: ..."), else its last line.
    why=$(grep "^$name: " "$work/$name.log" | tail -n 1 || true)
    [[ -n $why ]] || why=$(grep -v '^\s*$' "$work/$name.log" | tail -n 1)
    echo "FAILED (exit $rc): $why" >"$work/$name.summary"
    failed=1
  elif [[ ! -s $work/$name.summary ]]; then
    tail -n 1 "$work/$name.log" >"$work/$name.summary"
  fi
done

echo
bench_machine_after
echo "=== summary"
for name in "${names[@]}"; do
  prefix=$name
  while IFS= read -r line; do
    printf '%-12s %s\n' "$prefix" "$line"
    prefix=""
  done <"$work/$name.summary"
done
exit "$failed"
