#include "builder/guest_agent.h"

#include "builder/offline_customizer.h"
#include "builder/systemd_units.h"

namespace kiln {
namespace {

// POSIX sh and what every Debian has (util-linux's blkid and mount). It
// must never hold up a boot that kiln did not start: without kiln.instance
// on the kernel command line it looks for the seed once and does nothing
// if there is none.
constexpr std::string_view kAgentScript = R"AGENT(#!/bin/sh
# kiln's guest agent: applies the instance's personality from the KILNSEED
# disk and tells the host when the system is up. Installed by kiln.
set -u
seed=/run/kiln-seed
state=/var/lib/kiln

find_seed() {
  tries=1
  grep -q 'kiln.instance=' /proc/cmdline && tries=100
  while [ "$tries" -gt 0 ]; do
    dev=$(blkid -L KILNSEED 2>/dev/null) && [ -n "$dev" ] && { echo "$dev"; return 0; }
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] && sleep 0.1
  done
  return 1
}

apply_personality() {
  dev=$(find_seed) || exit 0
  mkdir -p "$seed"
  mountpoint -q "$seed" || mount -o ro "$dev" "$seed" || exit 1
  k="$seed/kiln"
  if [ -s "$k/hostname" ]; then
    name=$(cat "$k/hostname")
    echo "$name" > /etc/hostname
    echo "$name" > /proc/sys/kernel/hostname
    if grep -q '^127\.0\.1\.1' /etc/hosts; then
      sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$name/" /etc/hosts
    else
      printf '127.0.1.1\t%s\n' "$name" >> /etc/hosts
    fi
  fi
  if [ -s "$k/authorized_keys" ]; then
    mkdir -p /root/.ssh && chmod 700 /root/.ssh
    touch /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
    while IFS= read -r key; do
      grep -qxF "$key" /root/.ssh/authorized_keys || echo "$key" >> /root/.ssh/authorized_keys
    done < "$k/authorized_keys"
  fi
  [ -d "$k/files" ] && cp -a "$k/files/." /
  # UML's user networking is SLIP through slirp: no Ethernet, fixed addresses.
  if grep -q 'kiln.net=slirp' /proc/cmdline; then
    mkdir -p /run/systemd/network
    printf '[Match]\nName=eth0\n\n[Network]\nGateway=10.0.2.2\nDNS=10.0.2.3\n\n[Address]\nAddress=10.0.2.15/32\nPeer=10.0.2.2/32\n' \
      > /run/systemd/network/10-kiln-slirp.network
  fi
  exit 0
}

report_ready() {
  [ -s "$seed/kiln/instance-id" ] || exit 0
  id=$(cat "$seed/kiln/instance-id")
  if [ -x "$seed/kiln/firstboot" ] && [ ! -e "$state/firstboot-$id" ]; then
    mkdir -p "$state"
    "$seed/kiln/firstboot" > "$state/firstboot-$id.log" 2>&1
    echo "$?" > "$state/firstboot-$id"
  fi
  mac=none
  for nic in /sys/class/net/*; do
    [ "$(cat "$nic/type" 2>/dev/null)" = 1 ] || continue  # Ethernet only
    mac=$(cat "$nic/address") && break
  done
  line=$(printf 'KILN-READY %s hostname=%s machine-id=%s mac=%s' "$id" "$(cat /proc/sys/kernel/hostname)" \
    "$(cat /etc/machine-id)" "$mac")
  # Every active console: UML always adds console=tty0 after kiln's ttyS0.
  for tty in $(cat /sys/class/tty/console/active); do
    printf '\n%s\n' "$line" > "/dev/$tty"
  done
}

case "${1:-}" in
  personality) apply_personality ;;
  ready) report_ready ;;
  *) echo "usage: kiln-agent personality|ready" >&2; exit 2 ;;
esac
)AGENT";

constexpr std::string_view kPersonalityUnit = R"([Unit]
Description=kiln instance personality
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target network-pre.target systemd-networkd.service ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kiln/kiln-agent personality

[Install]
WantedBy=sysinit.target
)";

// DefaultDependencies=no keeps multi-user.target from ordering itself after
// this unit, which would be a cycle: this one runs once the target is up.
constexpr std::string_view kReadyUnit = R"([Unit]
Description=kiln readiness signal
DefaultDependencies=no
After=multi-user.target kiln-personality.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kiln/kiln-agent ready

[Install]
WantedBy=multi-user.target
)";

// UML has no ACPI power button: on a UML instance kiln boots (kiln.cad=poweroff
// on the command line) Ctrl-Alt-Del, which the host can send through the
// management console, powers off instead of rebooting.
constexpr std::string_view kCadGenerator = R"(#!/bin/sh
# kiln: Ctrl-Alt-Del powers off where the host asked for it at boot.
grep -q 'kiln.cad=poweroff' /proc/cmdline || exit 0
ln -sf /usr/lib/systemd/system/poweroff.target "$1/ctrl-alt-del.target"
)";

Result<> write_file(Ext4Image& fs, const std::string& path, std::string_view text, uint32_t mode, int64_t mtime) {
  KILN_TRY(make_parents(fs, path, mtime));
  return fs.write_file(path, text, Ext4Attributes{mode, 0, 0, mtime});
}

}  // namespace

Result<> install_guest_agent(Ext4Image& fs, int64_t mtime) {
  KILN_TRY(write_file(fs, "/usr/lib/kiln/kiln-agent", kAgentScript, 0755, mtime));
  KILN_TRY(install_unit(fs, "kiln-personality.service", kPersonalityUnit, mtime));
  KILN_TRY(write_file(fs, "/usr/lib/systemd/system-generators/kiln-cad-generator", kCadGenerator, 0755, mtime));
  return install_unit(fs, "kiln-ready.service", kReadyUnit, mtime);
}

}  // namespace kiln
