#!/usr/bin/env bash
# Times kiln's encryption, in one run, three ways:
#   bake       a warm bake (stage cache filled) of recipes/debian-12-luks.toml
#              against the same recipe without [storage.luks]
#              (target: at most 1.2x)
#   encrypt    build/kiln luks encrypt of the plain bake's root.img against
#              cryptsetup reencrypt --encrypt of a copy of the same image
#              (LUKS2, pbkdf2 at 1000 iterations and 4096-byte sectors in both,
#              so that the data path is what differs; target: at least 5x
#              faster)
#   throughput the bytes kiln encrypted per second (of wall time, and of CPU
#              time), as a percentage of `openssl speed -evp aes-256-xts`
#              (one core, 4 KiB blocks)
# Each result is checked outside the timings: the encrypted root decrypts
# (cryptsetup, through a detached header for the same volume key) to a
# filesystem that passes e2fsck -fn. Temporaries (about 6 GiB, sparse) are
# removed on exit, Ctrl-C included.
#
# Usage: sudo bench/encrypted_bake.sh
# Environment: KILN=path/to/kiln (default build/kiln), RUNS=N timed bakes of
#   each recipe (default 3), TMPDIR for scratch space, BENCH_CACHE=DIR for the
#   stage cache (default a temporary one), BENCH_SUMMARY=FILE to append the
#   summary lines to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
kiln=${KILN:-$here/build/kiln}
runs=${RUNS:-3}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

die() { echo "encrypted_bake: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: baking runs mmdebstrap and the in-image stage as root"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS=$runs: expected a positive integer"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
for tool in cryptsetup e2fsck openssl python3; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-crypt.XXXXXX")
cleanup() { rm -rf --one-file-system -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "encrypted_bake: interrupted" >&2; exit 130' INT TERM
cache=${BENCH_CACHE:-$work/cache}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
summary() {
  echo "$1"
  if [[ -n ${BENCH_SUMMARY:-} ]]; then echo "$1" >>"$BENCH_SUMMARY"; fi
}

# The same recipe twice: as shipped (LUKS2) and without its [storage.luks].
mkdir "$work/recipes"
cp "$here/recipes/debian-12-luks.toml" "$here/recipes/demo.passphrase" "$work/recipes/"
awk '/^\[storage\.luks\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$here/recipes/debian-12-luks.toml" \
  >"$work/recipes/plain.toml"
printf '%s' "$(head -n 1 "$here/recipes/demo.passphrase")" >"$work/typed.key"

# One bake; prints its wall time in ms and leaves the output in $work/$2.
bake() {
  local recipe=$1 out=$2 start
  bench_settle
  start=$(now_ms)
  "$kiln" bake "$work/recipes/$recipe" -o "$work/$out" --cache "$cache" --json >"$work/$out.json"
  echo $(( $(now_ms) - start ))
}

bench_machine_before
echo "filling the stage cache (untimed bakes of both recipes)"
bake plain.toml plain >/dev/null
bake debian-12-luks.toml luks >/dev/null

plain_times=() luks_times=()
for (( i = 1; i <= runs; i++ )); do
  plain_times+=("$(bake plain.toml plain)")
  luks_times+=("$(bake debian-12-luks.toml luks)")
  echo "run $i: plain $(seconds "${plain_times[-1]}") s, encrypted $(seconds "${luks_times[-1]}") s"
done
plain_ms=$(printf '%s\n' "${plain_times[@]}" | median)
luks_ms=$(printf '%s\n' "${luks_times[@]}" | median)

# Checked outside the timings: the encrypted root decrypts to a clean filesystem.
decrypt_check() {
  local container=$1 offset=$2 what=$3
  rm -f "$work/vk" "$work/hdr"
  cryptsetup luksDump --dump-volume-key --volume-key-file "$work/vk" -q --key-file "$work/typed.key" "$container" \
    >/dev/null
  dd if="$container" of="$work/data.img" bs=1M skip=$(( offset / 1048576 )) conv=sparse status=none
  cryptsetup luksFormat -q --type luks2 --header "$work/hdr" --volume-key-file "$work/vk" --key-size 512 \
    --sector-size 4096 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$work/typed.key" "$work/data.img"
  cryptsetup reencrypt --decrypt -q --force-offline-reencrypt --header "$work/hdr" --key-file "$work/typed.key" \
    "$work/data.img"
  if ! e2fsck -fn "$work/data.img" >"$work/fsck.log" 2>&1; then
    echo "encrypted_bake: $what does not decrypt to a clean filesystem:" >&2
    tail -n 20 "$work/fsck.log" >&2
    exit 1
  fi
  rm -f "$work/data.img" "$work/vk" "$work/hdr"
}
offset=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["storage"]["encryption"]["data_offset"])' \
  "$work/luks/manifest.json")
decrypt_check "$work/luks/root.img" "$offset" "the encrypted bake"

# kiln luks encrypt against cryptsetup reencrypt --encrypt, same plain image.
plain_img=$work/plain/root.img
cat -- "$plain_img" >/dev/null  # neither pays for a cold page cache
start=$(now_ms)
# `times` in the subshell: its children's user and system CPU time.
( "$kiln" luks encrypt "$plain_img" "$work/kiln-luks.img" --key-file "$work/typed.key" --pbkdf pbkdf2 \
    --pbkdf-iterations 1000 >"$work/encrypt.out"; times >"$work/encrypt.cpu" )
kiln_enc_ms=$(( $(now_ms) - start ))
kiln_cpu_s=$(awk 'NR == 2 {
  split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/encrypt.cpu")
cat "$work/encrypt.out"
encrypted=$(python3 -c '
import re, sys
m = re.search(r"([0-9.]+) (B|KiB|MiB|GiB) encrypted", open(sys.argv[1]).read())
print(int(float(m.group(1)) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)]))' "$work/encrypt.out")
decrypt_check "$work/kiln-luks.img" 16777216 "kiln luks encrypt"
rm -f "$work/kiln-luks.img"

cp --sparse=always -- "$plain_img" "$work/cryptsetup.img"
start=$(now_ms)
cryptsetup reencrypt --encrypt -q --type luks2 --header "$work/cryptsetup.hdr" --sector-size 4096 --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --key-file "$work/typed.key" --force-offline-reencrypt "$work/cryptsetup.img"
cs_enc_ms=$(( $(now_ms) - start ))
rm -f "$work/cryptsetup.img" "$work/cryptsetup.hdr"

# openssl's own speed for the cipher, one core, 4 KiB blocks, in bytes/s.
openssl_bps=$(openssl speed -evp aes-256-xts -bytes 4096 -seconds 3 2>/dev/null |
  awk '/^AES-256-XTS/ { v = $2; sub(/k$/, "", v); print v * 1000 }')
kiln_bps=$(awk -v b="$encrypted" -v ms="$kiln_enc_ms" 'BEGIN { printf "%.0f", b / (ms / 1000) }')
percent=$(awk -v a="$kiln_bps" -v b="$openssl_bps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
# Per second of CPU (user + system, all threads): what the machine's load
# and the disk do not change.
kiln_cpu_bps=$(awk -v b="$encrypted" -v s="$kiln_cpu_s" 'BEGIN { printf "%.0f", b / (s > 0 ? s : 0.01) }')
cpu_percent=$(awk -v a="$kiln_cpu_bps" -v b="$openssl_bps" 'BEGIN { printf "%.0f%%", 100 * a / b }')
mbps() { awk -v b="$1" 'BEGIN { printf "%.0f MB/s", b / 1e6 }'; }

image_mib=$(( $(stat -c %s "$plain_img") / 1048576 ))
summary "bake:       encrypted $(seconds "$luks_ms") s, plain $(seconds "$plain_ms") s (warm, median of $runs): $(bench_ratio "$luks_ms" "$plain_ms") (target <= 1.2x)"
summary "encrypt:    kiln luks encrypt $(seconds "$kiln_enc_ms") s, cryptsetup reencrypt --encrypt $(seconds "$cs_enc_ms") s (${image_mib} MiB ext4): kiln $(bench_ratio "$cs_enc_ms" "$kiln_enc_ms") faster (target >= 5x)"
summary "throughput: kiln $(mbps "$kiln_bps") wall ($percent of openssl speed -evp aes-256-xts, $(mbps "$openssl_bps") on one core), $(mbps "$kiln_cpu_bps") per CPU-second ($cpu_percent), over $(( encrypted / 1048576 )) MiB in use; load $(cut -d ' ' -f 1 /proc/loadavg) on $(nproc) cores"
bench_machine_after
