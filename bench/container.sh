#!/usr/bin/env bash
# Times composing a new domain, up to a bootable config, from the same baked
# image, in one run:
#   kiln container   from canned parts (target: under 1 s): a new root
#                    filesystem image, canned archives expanded into it, the
#                    domain's /etc patch (hostname, a user) applied, the
#                    stripped Xen config written. Two layouts:
#                      shared /usr   the paper's: the root archive without
#                                    /usr, which is one read-only image all
#                                    domains share (the initramfs mounts it);
#                      whole root    /usr expanded into each domain's root
#                                    too, as UML needs (no initramfs); the
#                                    layout tests/integration/container_test.cc
#                                    boots.
#   cp + virt-sysprep  the libvirt user's route: a copy of the whole disk
#                    (cp --reflink=auto --sparse=always) then virt-sysprep
#                    --hostname with a --run-command useradd. virt-clone would
#                    make that copy, but it needs a running libvirtd with the
#                    original domain defined in it; where there is none (as
#                    here) the cp stands in for it, and the script says so.
#                    libguestfs's appliance runs under TCG where KVM does not
#                    work (LIBGUESTFS_BACKEND_SETTINGS=force_tcg); on a host
#                    with no kernel of its own it boots the baked kernel.
# The canned parts are cut from the image first, untimed. Each result is
# checked outside the timings (e2fsck -fn, /etc/hostname). Prints the times
# and the ratios to kiln's. Benchmarks report; they do not assert.
# Temporaries (about 5 GiB) are removed on exit, Ctrl-C included.
#
# Usage: sudo bench/container.sh [IMAGE-DIR]   (a `kiln bake` output of the
#          default recipe; default run-all's shared bake, BENCH_IMAGE, else
#          one baked here first, untimed, through BENCH_CACHE if set)
# Environment: KILN=path/to/kiln (default build/kiln), ROUNDS (default 5),
#   TMPDIR for scratch space, BENCH_SUMMARY=FILE to append the summary to.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/machine.sh
source "$here/bench/lib/machine.sh"
# shellcheck source=bench/lib/image.sh
source "$here/bench/lib/image.sh"
image_dir=${1:-${BENCH_IMAGE:-}}
kiln_source=${KILN:-$here/build/kiln}
rounds=${ROUNDS:-5}

die() { echo "container: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root: the canned parts keep the image's owners"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$rounds: expected a positive integer"
[[ -x $kiln_source ]] || die "$kiln_source: missing; build it with make"
command -v debugfs >/dev/null || die "debugfs not found (Debian package e2fsprogs)"
command -v e2fsck >/dev/null || die "e2fsck not found (Debian package e2fsprogs)"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-bench-container.XXXXXX")
cleanup() { rm -rf --one-file-system -- "$work"; }
trap cleanup EXIT
trap 'echo; echo "container: interrupted" >&2; exit 130' INT TERM
# A private copy: a rebuild of build/kiln must not change the binary mid-run.
kiln=$(bench_copy_kiln "$kiln_source" "$work/bin") || exit 2
image_dir=$(bench_image_dir container "$kiln" "$work" "$image_dir") || exit 2
root_fs=$(bench_root_fs "$image_dir") || die "$image_dir: no root partition in its manifest.json"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Checks the filesystem FILE[?offset=N]: e2fsck clean, /etc/hostname NAME.
check() {
  local fs=$1 name=$2 who=$3 found
  e2fsck -fn "$fs" >"$work/fsck.log" 2>&1 ||
    { echo "container: $who made a root filesystem that fails e2fsck:" >&2; tail -n 20 "$work/fsck.log" >&2; exit 1; }
  found=$(debugfs -R 'cat /etc/hostname' "$fs" 2>/dev/null)
  [[ $found == "$name" ]] || { echo "container: $who left /etc/hostname as '$found', not '$name'" >&2; exit 1; }
}

bench_machine_before
echo "image: $root_fs, $(du -h "$image_dir/disk.raw" | cut -f1) used"

# --- Canned parts (untimed) ----------------------------------------------------
# The root filesystem's top-level directories with debugfs rdump (owners and
# modes kept), its top-level symlinks (bin -> usr/bin...) by hand.
tree=$work/tree
mkdir -p "$tree" "$work/usr-part" "$work/store" "$work/domains"
while IFS=/ read -r _ _ mode _ _ name _; do
  [[ -z $name || $name == . || $name == .. || $name == lost+found ]] && continue
  case $mode in
    040*) debugfs -R "rdump /$name $tree" "$root_fs" 2>/dev/null ;;
    120*) ln -s "$(debugfs -R "stat /$name" "$root_fs" 2>/dev/null |
                   sed -n 's/^Fast link dest: "\(.*\)"$/\1/p')" "$tree/$name" ;;
  esac
done < <(debugfs -R "ls -p /" "$root_fs" 2>/dev/null)
mv "$tree/usr" "$work/usr-part/usr"
mkdir -m 0755 "$tree/usr"
rm -rf -- "${tree:?}"/boot/*
start=$(now_ms)
# root-whole: the root without /usr, mounted by label; usr.cpio.zst holds
# ./usr for it. root-shared: the same with /usr mounted read-only from the
# shared image, usr.img.
printf 'LABEL=root\t/\text4\terrors=remount-ro\t0\t1\n' >"$tree/etc/fstab"
cat >"$work/can-whole.domain" <<EOF
[create $tree/ $work/store/root-whole.cpio.gz][end]
[create $work/usr-part/ $work/store/usr.cpio.zst][end]
EOF
"$kiln" container "$work/can-whole.domain" >/dev/null
printf 'LABEL=usr\t/usr\text4\tro\t0\t0\n' >>"$tree/etc/fstab"
cat >"$work/can-shared.domain" <<EOF
[create $tree/ $work/store/root-shared.cpio.gz][end]
[create $work/usr-part/usr/ $work/usr-only.cpio.zst][end]
[image $work/store/usr.img 1500M usr ext4][end]
[populate image $work/store/usr.img /usr/ $work/usr-only.cpio.zst][end]
EOF
"$kiln" container "$work/can-shared.domain" >/dev/null
rm -f -- "$work/usr-only.cpio.zst"
echo "canned parts, made once in $(seconds $(( $(now_ms) - start ))) s (untimed): root-shared.cpio.gz" \
     "$(du -h "$work/store/root-shared.cpio.gz" | cut -f1), usr.img $(du -h "$work/store/usr.img" | cut -f1) used," \
     "usr.cpio.zst $(du -h "$work/store/usr.cpio.zst" | cut -f1)"

# fido's /etc patch: its hostname and a user, made with kiln diff.
for side in old new; do
  mkdir -p "$work/$side/etc"
  for f in hostname passwd shadow group gshadow; do cp -a "$tree/etc/$f" "$work/$side/etc/"; done
done
echo fido >"$work/new/etc/hostname"
echo 'alice:x:2001:2001::/home/alice:/bin/bash' >>"$work/new/etc/passwd"
echo 'alice:x:2001:' >>"$work/new/etc/group"
echo 'alice:!:19700:0:99999:7:::' >>"$work/new/etc/shadow"
echo 'alice:!::' >>"$work/new/etc/gshadow"
"$kiln" diff "$work/old" "$work/new" -o "$work/store/fido-etc.patch" >/dev/null

root=$work/domains/fido-root
cat >"$work/fido-shared.domain" <<EOF
name = "fido"
kernel = "$image_dir/vmlinuz"
ramdisk = "$image_dir/initrd.img"
memory = 512
root = "/dev/xvda1 ro"
disk = ['file:$root,xvda1,w', 'file:$work/store/usr.img,xvda2,r']
[image $root 256MB root ext4] [end]
[populate image $root /mnt/ file://$work/store/root-shared.cpio.gz][end]
[patch file://$root file://$work/store/fido-etc.patch][end]
EOF
cat >"$work/fido-whole.domain" <<EOF
name = "fido"
kernel = "$image_dir/vmlinuz"
memory = 256
root = "/dev/xvda1 ro"
disk = ['file:$root,xvda1,w']
[image $root 1500M root ext4] [end]
[populate image $root /mnt/ file://$work/store/root-whole.cpio.gz][end]
[populate image $root /mnt/ file://$work/store/usr.cpio.zst][end]
[patch file://$root file://$work/store/fido-etc.patch][end]
EOF

# Read the canned parts once, so that no round pays for a cold page cache.
cat "$work"/store/* >/dev/null

compose() {  # DOMAIN-FILE; prints milliseconds
  rm -f -- "$root" "$work/fido.cfg"
  local start ms
  start=$(now_ms)
  "$kiln" container "$1" --stripped "$work/fido.cfg" --dir "$work" >/dev/null
  ms=$(( $(now_ms) - start ))
  check "$root" fido "kiln container"
  [[ -s $work/fido.cfg ]] || { echo "container: no stripped config from $1" >&2; exit 1; }
  echo "$ms"
}

declare -A kiln_ms
for layout in shared whole; do
  runs=()
  for (( run = 1; run <= rounds; run++ )); do runs+=("$(compose "$work/fido-$layout.domain")"); done
  kiln_ms[$layout]=$(median "${runs[@]}")
  label=$([[ $layout == shared ]] && echo "shared /usr" || echo "whole root")
  printf 'kiln container, %-12s %s s  (median of %s: %s ms)\n' "$label:" "$(seconds "${kiln_ms[$layout]}")" \
    "$rounds" "${runs[*]}"
done
rm -f -- "$root"

# --- cp + virt-sysprep ------------------------------------------------------
# libguestfs boots a small appliance VM that supermin builds from the host's
# kernel. A host without one (a container) lends it the baked kernel with its
# modules; supermin still reads the host's /lib/modules, which a private mount
# namespace adds (an empty overlay) without touching the host.
sysprep_ms="" why=""
root_offset=$(sed -n '/"partitions"/,/\]/p' "$image_dir/manifest.json" |
              awk '/"name": "root"/ { root = 1 } root && /"offset"/ { gsub(/[^0-9]/, ""); print; exit }')
guestfs_env=(LIBGUESTFS_BACKEND=direct LIBGUESTFS_CACHEDIR="$work/guestfs" TMPDIR="$work")
guestfs_lib="" lent=""
sysprep() {  # IMAGE HOSTNAME [OPTIONS...]
  local image=$1 name=$2
  shift 2
  local args=("$@" --format raw -a "$image" --hostname "$name" --run-command 'useradd -m -u 2001 alice')
  if [[ -n $guestfs_lib ]]; then
    mkdir -p "$work/lib/upper/modules" "$work/lib/work"
    env "${guestfs_env[@]}" unshare --mount --propagation private sh -c \
      'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$1" &&
       shift 2 && exec virt-sysprep "$@"' sh "$guestfs_lib" "$work/lib" "${args[@]}"
  else
    env "${guestfs_env[@]}" virt-sysprep "${args[@]}"
  fi
}
guestfs_failure() {
  { grep -m 1 '^qemu-system[^:]*: ' "$1" || grep -v '^\s*$' "$1" | grep -m 1 -i error || tail -n 1 "$1"; } | cut -c1-160
}
if ! command -v virt-sysprep >/dev/null; then
  why="not installed (Debian package libguestfs-tools)"
elif [[ -z $root_offset ]]; then
  why="no root partition in $image_dir/manifest.json"
else
  if ! compgen -G '/boot/vmlinuz-*' >/dev/null && ! compgen -G '/lib/modules/*/vmlinuz' >/dev/null; then
    kver=$(sed -n 's/^ *"kernel": "\([^"]*\)".*/\1/p' "$image_dir/manifest.json")
    mkdir -p "$work/kernel"
    cp "$image_dir/vmlinuz" "$work/kernel/vmlinuz"
    cp -a "$work/usr-part/usr/lib/modules/$kver" "$work/kernel/$kver"
    guestfs_env+=(SUPERMIN_KERNEL="$work/kernel/vmlinuz" SUPERMIN_MODULES="$work/kernel/$kver")
    [[ -d /lib/modules ]] || guestfs_lib=$(readlink -f /lib)
    lent=", on the baked kernel $kver: this host has none"
  fi
  mkdir -p "$work/guestfs"
  # Untimed, as kiln's canned parts were made untimed: the first run builds
  # the appliance, and finds out whether qemu can use KVM here.
  echo "virt-sysprep: untimed first run (builds the libguestfs appliance$lent)"
  cp --reflink=auto --sparse=always "$image_dir/disk.raw" "$work/clone.raw"
  if ! sysprep "$work/clone.raw" warm >"$work/sysprep.log" 2>&1 &&
     [[ -z ${LIBGUESTFS_BACKEND_SETTINGS:-} ]]; then
    echo "virt-sysprep: without KVM (LIBGUESTFS_BACKEND_SETTINGS=force_tcg): $(guestfs_failure "$work/sysprep.log")"
    guestfs_env+=(LIBGUESTFS_BACKEND_SETTINGS=force_tcg)
    sysprep "$work/clone.raw" warm >"$work/sysprep.log" 2>&1 || true
  fi
  if debugfs -R 'cat /etc/hostname' "$work/clone.raw?offset=$root_offset" 2>/dev/null | grep -qx warm; then
    start=$(now_ms)
    cp --reflink=auto --sparse=always "$image_dir/disk.raw" "$work/clone.raw"
    copy_ms=$(( $(now_ms) - start ))
    if sysprep "$work/clone.raw" fido >"$work/sysprep.log" 2>&1; then
      sysprep_ms=$(( $(now_ms) - start ))
      check "$work/clone.raw?offset=$root_offset" fido "virt-sysprep"
      echo "cp + virt-sysprep:            $(seconds "$sysprep_ms") s  (cp --reflink=auto --sparse=always" \
           "$(seconds "$copy_ms") s + virt-sysprep --hostname --run-command useradd" \
           "$(seconds $(( sysprep_ms - copy_ms ))) s; appliance under" \
           "$([[ " ${guestfs_env[*]} " == *force_tcg* ]] && echo TCG || echo KVM))"
    else
      why="it failed here: $(guestfs_failure "$work/sysprep.log")"
    fi
  else
    why="it failed here: $(guestfs_failure "$work/sysprep.log")"
  fi
  rm -rf --one-file-system -- "$work/clone.raw" "$work/guestfs"
fi
[[ -n $why ]] && echo "cp + virt-sysprep: not timed: $why"

# --- virt-clone -------------------------------------------------------------
if ! command -v virt-clone >/dev/null; then
  echo "virt-clone: not run: not installed (Debian package virtinst), and it needs a running libvirtd with" \
       "the original domain defined in it; the cp above makes the copy it would make"
elif ! virsh -c qemu:///system version >/dev/null 2>&1; then
  echo "virt-clone: not run: no libvirtd answers on qemu:///system (virt-clone copies a domain defined there);" \
       "the cp above makes the copy it would make"
else
  echo "virt-clone: not run: this benchmark does not define domains in the host's libvirt; the cp above makes" \
       "the copy it would make"
fi

line="container: kiln $(seconds "${kiln_ms[shared]}") s (shared /usr), $(seconds "${kiln_ms[whole]}") s (whole root)"
if [[ -n $sysprep_ms ]]; then
  line+="; cp+virt-sysprep $(seconds "$sysprep_ms") s = $(bench_ratio "$sysprep_ms" "${kiln_ms[shared]}")"
  line+=" / $(bench_ratio "$sysprep_ms" "${kiln_ms[whole]}") kiln's time"
fi
echo "$line"
if [[ -n ${BENCH_SUMMARY:-} ]]; then echo "$line" >>"$BENCH_SUMMARY"; fi
bench_machine_after
exit 0
