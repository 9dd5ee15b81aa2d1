#!/usr/bin/env bash
# Times publishing a baked image (at least 1 GiB) as a signed xvm archive, in
# one run, three ways:
#   kiln           build/kiln publish --no-virt-builder: parallel gzip of the
#                  images, manifest.txt + manifest.sha256, three detached
#                  signatures (gpgme), the tar, the signed vmcast feed
#   shell+gzip     the pipeline a user would write: gzip -c each image,
#                  sha1sum > manifest.txt, gpg --detach-sign xvm.xml and
#                  manifest.txt, tar -cf (no sha256 manifest, no feed)
#   shell+pigz     the same with pigz (all cores) instead of gzip
# and prints each time with its ratio to kiln's (target: kiln at least 1.5x
# faster than shell+gzip on 2 cores). Then, for information, kiln's whole
# publish with the virt-builder repository (xz image, clearsigned index).
# Every archive is checked outside the timings: its images expand back to the
# baked files. A throwaway signing key is generated in a private GnuPG home.
# Temporaries are removed on exit, Ctrl-C included.
#
# Usage: bench/publish.sh [IMAGE-DIR]   (default: run-all's shared bake,
#        BENCH_IMAGE, else a bake of recipes/debian-12-minimal.toml)
# Environment: KILN=path/to/kiln (default build/kiln), TMPDIR for scratch
#   space, BENCH_CACHE=DIR a stage cache for that bake, BENCH_SUMMARY=FILE to
#   append the summary line to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
kiln=${KILN:-$here/build/kiln}

die() { echo "publish: $*" >&2; exit 2; }
bench=publish
# shellcheck source=bench/lib/feed_bench.sh
source "$here/bench/lib/feed_bench.sh"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
for tool in gzip pigz gpg tar sha1sum; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

feed_bench_workdir
feed_bench_image "${1:-}"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }

# The images and configs the bake listed, from its manifest.json.
mapfile -t files < <(sed -n '/^  "artifacts": \[/,/^  \]/s/^ *"file": "\([^"]*\)".*/\1/p' "$image/manifest.json")
images=() configs=()
for f in "${files[@]}"; do
  case $f in *.xl.cfg|*.libvirt.xml) configs+=("$f") ;; *) images+=("$f") ;; esac
done
bytes=0
for f in "${images[@]}"; do bytes=$(( bytes + $(stat -c %s "$image/$f") )); done
(( bytes >= 1 << 30 )) || die "$image: its images hold $(( bytes >> 20 )) MiB; the benchmark wants at least 1 GiB"

feed_bench_signing_key

bench_machine_before
echo "image: $image ($name $version; ${#images[@]} images, $(( bytes >> 20 )) MiB apparent, $(du -sm "$image" | cut -f1) MiB on disk), $(nproc) cores"
# Read the image once so that no contender pays for a cold page cache.
for f in "${images[@]}"; do cat -- "$image/$f" >/dev/null; done

# Checks outside the timings that an archive's images expand to the bake's.
check() {  # ARCHIVE LABEL
  local dir=$work/check
  rm -rf -- "$dir" && mkdir "$dir"
  tar -xf "$1" -C "$dir"
  for f in "${images[@]}"; do
    local member=$dir/$f.img.gz
    [[ $f == *.img ]] && member=$dir/$f.gz
    if ! gzip -dc "$member" | cmp -s - "$image/$f"; then
      echo "publish: $2 made an archive whose $f does not expand to the baked one" >&2
      exit 1
    fi
  done
  rm -rf -- "$dir"
}

start=$(now_ms)
"$kiln" publish "$image" --feed "$work/kiln-site" --base-url https://images.example.invalid/ --sign-key "$fpr" \
  --no-virt-builder >/dev/null
kiln_ms=$(( $(now_ms) - start ))
xvm=$work/kiln-site/$name-$version.xvm
echo "kiln publish: $(seconds "$kiln_ms") s ($(( $(stat -c %s "$xvm") >> 20 )) MiB archive)"
check "$xvm" kiln
rm -rf -- "$work/kiln-site"

# What a user writes without kiln. xvm.xml is written by hand (here: a copy of
# a minimal one); the rest is the classic tools.
shell_publish() {  # COMPRESSOR
  local dir=$work/shell
  rm -rf -- "$dir" && mkdir "$dir"
  (
    cd "$dir"
    cp "$image/manifest.json" .
    for f in "${configs[@]}"; do cp "$image/$f" .; done
    members=()
    for f in "${images[@]}"; do
      member=$f.img.gz
      [[ $f == *.img ]] && member=$f.gz
      "$1" -c "$image/$f" >"$member"
      members+=("$member")
    done
    printf '<?xml version="1.0"?>\n<appliance><name><label>%s</label></name><version>%s</version></appliance>\n' \
      "$name" "$version" >xvm.xml
    sha1sum xvm.xml manifest.json "${configs[@]}" "${members[@]}" >manifest.txt
    gpg --batch --yes --armor --detach-sign -o signature.asc xvm.xml
    gpg --batch --yes --armor --detach-sign -o mf-signature.asc manifest.txt
    tar -cf ../shell.xvm xvm.xml signature.asc manifest.txt mf-signature.asc manifest.json "${configs[@]}" "${members[@]}"
  )
  rm -rf -- "$dir"
}

start=$(now_ms)
shell_publish gzip
gzip_ms=$(( $(now_ms) - start ))
echo "shell pipeline with gzip: $(seconds "$gzip_ms") s"
check "$work/shell.xvm" "the gzip pipeline"
rm -f -- "$work/shell.xvm"

start=$(now_ms)
shell_publish pigz
pigz_ms=$(( $(now_ms) - start ))
echo "shell pipeline with pigz: $(seconds "$pigz_ms") s"
check "$work/shell.xvm" "the pigz pipeline"
rm -f -- "$work/shell.xvm"

start=$(now_ms)
"$kiln" publish "$image" --feed "$work/kiln-site" --base-url https://images.example.invalid/ --sign-key "$fpr" \
  >/dev/null
full_ms=$(( $(now_ms) - start ))
echo "kiln publish with the virt-builder repository (xz -1): $(seconds "$full_ms") s"

summary="publish $(( bytes >> 20 )) MiB: kiln $(seconds "$kiln_ms") s, shell+gzip $(seconds "$gzip_ms") s ($(bench_ratio "$gzip_ms" "$kiln_ms")), shell+pigz $(seconds "$pigz_ms") s ($(bench_ratio "$pigz_ms" "$kiln_ms")); with virt-builder $(seconds "$full_ms") s"
echo "$summary"
[[ -n ${BENCH_SUMMARY:-} ]] && echo "$summary" >>"$BENCH_SUMMARY"
bench_machine_after
