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
    [ "${nic##*/}" = lo ] && continue
    mac=$(cat "$nic/address") && break
  done
  printf '\nKILN-READY %s hostname=%s machine-id=%s mac=%s\n' "$id" "$(cat /proc/sys/kernel/hostname)" \
    "$(cat /etc/machine-id)" "$mac" > /dev/console
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

}  // namespace

Result<> install_guest_agent(Ext4Image& fs, int64_t mtime) {
  const std::string script = "/usr/lib/kiln/kiln-agent";
  KILN_TRY(make_parents(fs, script, mtime));
  KILN_TRY(fs.write_file(script, kAgentScript, Ext4Attributes{0755, 0, 0, mtime}));
  KILN_TRY(install_unit(fs, "kiln-personality.service", kPersonalityUnit, mtime));
  return install_unit(fs, "kiln-ready.service", kReadyUnit, mtime);
}

}  // namespace kiln
