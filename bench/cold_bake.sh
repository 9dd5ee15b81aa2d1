#!/usr/bin/env bash
# Times a cold bake of the default recipe (recipes/debian-12-minimal.toml), in
# one run, three ways:
#   kiln              build/kiln bake --no-cache (runs mmdebstrap, with its
#                     tree on /dev/shm when there is room and each initramfs
#                     made once (builder/bootstrap.h), then makes the ext4,
#                     GPT, ESP, kernel, Xen and libvirt outputs)
#   floor             what any such tool has to do at least: the same
#                     mmdebstrap call kiln makes (builder/bootstrap.cc), into a
#                     directory, then mke2fs -t ext4 -d of that directory into
#                     an image of the size of kiln's root filesystem
#   xen-create-image  xen-tools, --dir (loop-mounted image file), bookworm,
#                     debootstrap minbase with the recipe's packages (skipped
#                     when xen-tools is not installed)
# and prints each time, kiln's ratio to the floor (target: at most 1.15x) and
# xen-create-image's ratio to kiln. Every contender downloads every package
# from the host's Debian mirror (none keeps a package cache), so the run starts
# with one untimed mmdebstrap that warms the mirror and DNS for all of them.
# Each result is checked afterwards, outside the timings: e2fsck -fn of every
# image, the floor must have installed the same packages as kiln, and
# xen-create-image (which exits 0 even when its hooks fail) must have put a
# kernel, sshd and systemd-resolved into its image. Temporaries are removed on
# exit, Ctrl-C included; the tools run in a private mount namespace so that no
# mount outlives them.
#
# Usage: sudo bench/cold_bake.sh
# Environment: KILN=path/to/kiln (default build/kiln), ROUNDS=N kiln/floor
#   pairs, in alternating order (default 1; medians are reported), WARMUP=0
#   skips the warm-up, XEN=0 skips xen-create-image, TMPDIR for scratch space
#   (about 3 GiB), BENCH_SUMMARY=FILE to append the summary lines to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
kiln=${KILN:-$here/build/kiln}
recipe=$here/recipes/debian-12-minimal.toml
rounds=${ROUNDS:-1}
epoch=${SOURCE_DATE_EPOCH:-1700000000}

die() { echo "cold_bake: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: mmdebstrap and xen-create-image need it here"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$rounds: expected a positive integer"
[[ -x $kiln ]] || die "$kiln: missing; build it with make"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (Debian package mmdebstrap)"
command -v mke2fs >/dev/null || die "mke2fs not found (Debian package e2fsprogs)"
command -v e2fsck >/dev/null || die "e2fsck not found (Debian package e2fsprogs)"
command -v debugfs >/dev/null || die "debugfs not found (Debian package e2fsprogs)"
command -v unshare >/dev/null || die "unshare not found (Debian package util-linux)"

# The bootstrap kiln runs for this recipe ([bootstrap] section and
# builder/bootstrap.cc), from the host's mirror for its own release
# (builder/apt_sources.cc).
suite=bookworm
packages=systemd-sysv,udev,dbus,linux-image-amd64,openssh-server,iproute2,iputils-ping,systemd-resolved
mirror=$(bench_debian_mirror)
mmdebstrap_args=(--variant=minbase --architectures=amd64 --components=main
                 '--aptopt=Acquire::Retries "3"' "--include=$packages")
tool_env=(LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH="$epoch")

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-bake.XXXXXX")
xen_log=""
cleanup() {
  rm -rf --one-file-system -- "$work"
  [[ -n $xen_log ]] && rm -f -- "$xen_log"
  return 0
}
trap cleanup EXIT
trap 'echo; echo "cold_bake: interrupted" >&2; exit 130' INT TERM
# The build directory may be shared: a rebuild during the run must neither
# change nor break the binary under test.
kiln=$(bench_copy_kiln "$kiln" "$work/bin") || exit 2

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
summary() {
  echo "$1"
  if [[ -n ${BENCH_SUMMARY:-} ]]; then echo "$1" >>"$BENCH_SUMMARY"; fi
}
# Tools that mount (mmdebstrap, xen-create-image) run in their own mount
# namespace, as kiln runs mmdebstrap: their mounts vanish when they exit.
private() { unshare --mount --propagation private "$@"; }

fsck_or_fail() {
  if ! e2fsck -fn "$1" >"$work/fsck.log" 2>&1; then
    echo "cold_bake: $2 made an image that fails e2fsck:" >&2
    tail -n 20 "$work/fsck.log" >&2
    exit 1
  fi
}

# Names of the packages kiln's manifest lists / the floor's dpkg database holds.
manifest_packages() {
  awk '/"packages": \[/ { inside = 1 }
       inside { depth += gsub(/\[/, "[") - gsub(/\]/, "]")
                if (match($0, /"name": "[^"]*"/)) print substr($0, RSTART + 9, RLENGTH - 10)
                if (depth == 0) exit }' "$1" | sort
}
tree_packages() {
  dpkg-query --admindir="$1/var/lib/dpkg" -W -f='${db:Status-Status} ${Package}\n' |
    awk '$1 == "installed" { print $2 }' | sort
}

echo "recipe: recipes/debian-12-minimal.toml, mirror $mirror, SOURCE_DATE_EPOCH=$epoch"
bench_machine_before

if [[ ${WARMUP:-1} != 0 ]]; then
  echo "warm-up: one untimed mmdebstrap of the same package set"
  private env "${tool_env[@]}" TMPDIR="$work" mmdebstrap -q "${mmdebstrap_args[@]}" --format=null \
    "$suite" "$work/null" "$mirror"
fi

root_bytes=""
kiln_times=() floor_times=() kiln_rest=() floor_rest=()
run_kiln() {
  local start ms
  start=$(now_ms)
  SOURCE_DATE_EPOCH=$epoch TMPDIR=$work "$kiln" bake "$recipe" -o "$work/kiln" --no-cache --json \
    >"$work/kiln.json"
  ms=$(( $(now_ms) - start ))
  [[ -f $work/kiln/manifest.json ]] || { echo "cold_bake: kiln wrote no manifest.json" >&2; exit 1; }
  fsck_or_fail "$(bench_root_fs "$work/kiln")" kiln
  read -r _ _ root_bytes < <(bench_root_partition "$work/kiln")
  manifest_packages "$work/kiln/manifest.json" >"$work/kiln.packages"
  local stages
  stages=$(grep '"event":"done"' "$work/kiln.json" |
           sed -n 's/.*"seconds":\([0-9.eE+-]*\).*"stage":"\([a-z]*\)".*/\2 \1/p' |
           awk '{ printf "%s%s %.1f s", sep, $1, $2; sep = ", " }')
  echo "  kiln $(seconds "$ms") s ($stages)"
  # What kiln does after mmdebstrap: its stages but the bootstrap.
  kiln_rest+=("$(grep '"event":"done"' "$work/kiln.json" | grep -v '"stage":"bootstrap"' |
                 sed -n 's/.*"seconds":\([0-9.eE+-]*\).*/\1/p' | awk '{ t += $1 } END { printf "%d", t * 1000 }')")
  rm -rf --one-file-system -- "$work/kiln" "$work/kiln.json"
  kiln_times+=("$ms")
}
run_floor() {
  local start boot_ms mkfs_ms
  start=$(now_ms)
  private env "${tool_env[@]}" TMPDIR="$work" mmdebstrap -q "${mmdebstrap_args[@]}" --format=directory \
    "$suite" "$work/tree" "$mirror"
  boot_ms=$(( $(now_ms) - start ))
  truncate -s "$root_bytes" "$work/floor.img"
  start=$(now_ms)
  mke2fs -q -F -t ext4 -L root -d "$work/tree" "$work/floor.img"
  mkfs_ms=$(( $(now_ms) - start ))
  fsck_or_fail "$work/floor.img" "mmdebstrap + mke2fs -d"
  tree_packages "$work/tree" >"$work/floor.packages"
  if ! diff -u "$work/kiln.packages" "$work/floor.packages" >"$work/packages.diff"; then
    echo "cold_bake: the floor installed other packages than kiln (- kiln, + floor):" >&2
    grep '^[-+][^-+]' "$work/packages.diff" >&2
    exit 1
  fi
  echo "  floor $(seconds $(( boot_ms + mkfs_ms ))) s (mmdebstrap $(seconds "$boot_ms") s + mke2fs -d $(seconds "$mkfs_ms") s)"
  rm -rf --one-file-system -- "$work/tree" "$work/floor.img"
  floor_times+=($(( boot_ms + mkfs_ms )))
  floor_rest+=("$mkfs_ms")
}

for (( round = 1; round <= rounds; round++ )); do
  echo "round $round of $rounds"
  # kiln goes first in odd rounds: the floor needs its root filesystem size.
  if (( round % 2 )); then run_kiln; run_floor; else run_floor; run_kiln; fi
done

xen_ms="" xen_note=""
if [[ ${XEN:-1} == 0 ]]; then
  xen_note="skipped (XEN=0)"
elif ! command -v xen-create-image >/dev/null; then
  xen_note="skipped (not installed; Debian package xen-tools)"
elif ! command -v debootstrap >/dev/null; then
  xen_note="skipped (debootstrap not found; Debian package debootstrap)"
else
  host=kiln-bench-$$
  xen_log=/var/log/xen-tools/$host.log
  # systemd-resolved turns the chroot's /etc/resolv.conf into a link to a file
  # only a running resolved makes, after which xen-tools' hooks cannot resolve
  # the mirror (they install the kernel, grub for pygrub, locales): it goes in
  # last, by a role script, the xen-tools way to add packages.
  cat >"$work/resolved-role" <<'EOF'
#!/bin/sh
. /usr/share/xen-tools/common.sh
installDebianPackage "$1" systemd-resolved
EOF
  chmod +x "$work/resolved-role"
  xen_missing() {
    echo "cold_bake: xen-create-image exited 0 but its image has no $1; its log says:" >&2
    grep -E '^(E|W): |failed' "$xen_log" | tail -n 10 >&2
    exit 1
  }
  mkdir "$work/xen" "$work/xen-cfg"
  start=$(now_ms)
  if ! TMPDIR=$work private xen-create-image --hostname="$host" --dir="$work/xen" \
      --output="$work/xen-cfg" --nohosts --dist="$suite" --mirror="$mirror" --arch=amd64 \
      --size=2G --noswap --fs=ext4 --dhcp --pygrub --cache=no --role="$work/resolved-role" \
      --debootstrap-cmd="/usr/sbin/debootstrap --variant=minbase --include=${packages%,systemd-resolved}" \
      </dev/null >"$work/xen.out" 2>&1; then
    echo "cold_bake: xen-create-image failed:" >&2
    tail -n 20 "$work/xen.out" >&2
    exit 1
  fi
  xen_ms=$(( $(now_ms) - start ))
  image=$work/xen/domains/$host/disk.img
  fsck_or_fail "$image" xen-create-image
  kernels=$(debugfs -R 'ls /boot' "$image" 2>/dev/null | grep -c 'vmlinuz-' || true)
  [[ $kernels != 0 ]] || xen_missing "a kernel in /boot"
  for file in /usr/sbin/sshd /usr/lib/systemd/systemd-resolved; do
    debugfs -R "stat $file" "$image" 2>/dev/null | grep -q '^Inode:' || xen_missing "$file"
  done
  rm -rf --one-file-system -- "$work/xen"
fi

bench_machine_after
kiln_ms=$(median "${kiln_times[@]}")
floor_ms=$(median "${floor_times[@]}")
if (( rounds > 1 )); then echo "medians of $rounds rounds:"; fi
line="kiln $(seconds "$kiln_ms") s, floor (mmdebstrap + mke2fs -d) $(seconds "$floor_ms") s"
line+=", kiln/floor $(bench_ratio "$kiln_ms" "$floor_ms") (target <= 1.15x)"
summary "$line"
# mmdebstrap's time follows the network; what each adds to it does not.
summary "after mmdebstrap: kiln $(seconds "$(median "${kiln_rest[@]}")") s (ext4, GPT, ESP, outputs, hashes), floor $(seconds "$(median "${floor_rest[@]}")") s (mke2fs -d)"
if [[ -n $xen_ms ]]; then
  summary "xen-create-image $(seconds "$xen_ms") s, xen-create-image/kiln $(bench_ratio "$xen_ms" "$kiln_ms")"
else
  summary "xen-create-image: $xen_note"
fi
