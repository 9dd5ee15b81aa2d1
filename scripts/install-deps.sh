#!/usr/bin/env bash
# Installs every build and run dependency of kiln from Debian's packages.
# Safe to run any number of times: it only calls apt-get when something is missing.
set -euo pipefail

# The cross compilers build kiln's exec agent for arm64, i386 and armhf images.
build_packages=(
  g++ cmake ninja-build pkg-config make
  libext2fs-dev libfdisk-dev libcryptsetup-dev libgpgme-dev libarchive-dev
  libtomlplusplus-dev nlohmann-json3-dev libcli11-dev libfmt-dev libpugixml-dev
  libcurl4-openssl-dev libssl-dev libcrypt-dev libgtest-dev libgmock-dev
  libclang-rt-14-dev zlib1g-dev libvirt-dev
  g++-aarch64-linux-gnu g++-i686-linux-gnu g++-arm-linux-gnueabihf
)
# xen-utils-4.17 (without the hypervisor: --no-install-recommends) brings Xen's
# own pygrub, which the tests and bench/xen_pygrub.sh hold kiln's choice against.
# libvirt-daemon-system brings libvirt-daemon, whose virt-ssh-helper is what
# a qemu+ssh:// client runs on the far side (nc only when it is missing).
# qemu-user-static runs other architectures' programs while they are baked
# (kiln registers it with binfmt_misc when nothing did); qemu-system-arm and
# the AAVMF firmware boot arm64 and armhf images.
run_packages=(
  mmdebstrap debootstrap e2fsprogs fdisk mtools dosfstools systemd-boot-efi
  qemu-system-x86 qemu-utils ovmf user-mode-linux
  lvm2 cryptsetup-bin gnupg xz-utils zstd libxml2-utils libvirt-clients libvirt-daemon-system pigz
  arch-test uidmap ca-certificates busybox-static slirp iproute2 cloud-image-utils libguestfs-tools
  xen-tools openssh-client openssh-server
  xen-utils-4.17
  lzop lzip ncompress acl
  nftables dnsmasq-base
  qemu-user-static qemu-system-arm qemu-efi-aarch64 qemu-efi-arm
)

wanted=("${build_packages[@]}" "${run_packages[@]}")
missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} packages are installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
