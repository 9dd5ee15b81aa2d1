#!/usr/bin/env bash
# Measures how fast `kiln pull` verifies an xvm archive, as a fraction of
# sha256sum's speed over the same bytes. A baked image (at least 1 GiB) is
# published once (untimed) into a local site with a throwaway key; then, in
# one run:
#   sha256sum      of the archive file (one pass, one digest)
#   kiln pull      from the file:// feed, with --json, whose per-step times
#                  give the verify step: the signatures inside the archive,
#                  then sha1 and sha256 of every member against manifest.txt
#                  and manifest.sha256 (two digests of every byte, on every
#                  core). The fetch step (copy plus the archive's sha256
#                  against the feed) and the unpack step are shown too.
# and prints the verify throughput and its ratio to sha256sum's (above 1.0:
# faster than sha256sum). The pulled files are compared with the baked ones
# outside the timings. Temporaries are removed on exit, Ctrl-C included.
#
# Usage: bench/pull_verify.sh [IMAGE-DIR]   (default as bench/publish.sh)
# Environment: KILN=path/to/kiln (default build/kiln), TMPDIR for scratch
#   space, BENCH_CACHE=DIR a stage cache for the bake, BENCH_SUMMARY=FILE to
#   append the summary line to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
kiln=${KILN:-$here/build/kiln}

die() { echo "pull_verify: $*" >&2; exit 2; }
bench=pull_verify
# shellcheck source=bench/lib/feed_bench.sh
source "$here/bench/lib/feed_bench.sh"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
command -v sha256sum >/dev/null || die "sha256sum not found (Debian package coreutils)"

feed_bench_workdir
feed_bench_image "${1:-}"

feed_bench_signing_key
gpg --batch --export "$fpr" >"$work/trusted.gpg"

echo "pull_verify: publishing $image (untimed)"
"$kiln" publish "$image" --feed "$work/site" --base-url "file://$work/site/" --sign-key "$fpr" --no-virt-builder \
  >/dev/null
xvm=$work/site/$name-$version.xvm
xvm_bytes=$(stat -c %s "$xvm")
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

bench_machine_before
echo "archive: $xvm ($(( xvm_bytes >> 20 )) MiB), $(nproc) cores"
cat -- "$xvm" >/dev/null  # warm: both contenders read from the page cache
start=$(now_ms)
sha256sum "$xvm" >/dev/null
sha_ms=$(( $(now_ms) - start ))

"$kiln" pull "$work/site/vmcast.rss" --keyring "$work/trusted.gpg" -o "$work/pulled" --download-dir "$work/dl" \
  --json >"$work/pull.json"
step_seconds() {  # STAGE
  sed -n "s/.*\"event\":\"done\".*\"seconds\":\([0-9.e+-]*\).*\"stage\":\"$1\".*/\1/p" "$work/pull.json" | head -n 1
}
verify_s=$(step_seconds verify)
fetch_s=$(step_seconds fetch)
unpack_s=$(step_seconds unpack)
[[ -n $verify_s ]] || die "no verify step in kiln's --json output: $(cat "$work/pull.json")"

for f in $(sed -n '/^  "artifacts": \[/,/^  \]/s/^ *"file": "\([^"]*\)".*/\1/p' "$image/manifest.json"); do
  case $f in *.xl.cfg|*.libvirt.xml) continue ;; esac
  cmp -s "$work/pulled/$f" "$image/$f" || die "the pulled $f differs from the baked one"
done

mib_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
sha_s=$(awk -v ms="$sha_ms" 'BEGIN { printf "%.2f", ms / 1000 }')
echo "sha256sum: ${sha_s} s, $(mib_s "$xvm_bytes" "$sha_s") MiB/s"
echo "kiln pull: fetch ${fetch_s} s (copy + sha256 against the feed), verify ${verify_s} s, unpack ${unpack_s} s"
fraction=$(awk -v a="$sha_s" -v b="$verify_s" 'BEGIN { printf "%.2f", a / b }')
summary="pull verify $(( xvm_bytes >> 20 )) MiB: $(mib_s "$xvm_bytes" "$verify_s") MiB/s (sha1+sha256 of every member) = ${fraction}x sha256sum's $(mib_s "$xvm_bytes" "$sha_s") MiB/s"
echo "$summary"
[[ -n ${BENCH_SUMMARY:-} ]] && echo "$summary" >>"$BENCH_SUMMARY"
bench_machine_after
