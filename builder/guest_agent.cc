#include "builder/guest_agent.h"

#include <cstdlib>
#include <utility>

#include "base/subprocess.h"
#include "base/architecture.h"
#include "base/files.h"
#include "builder/offline_customizer.h"
#include "builder/system_setup.h"
#include "builder/systemd_units.h"
#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

// POSIX sh and what every Debian has (util-linux's blkid and mount). It
// must never hold up a boot that kiln did not start: without kiln.instance
// on the kernel command line it looks for the seed once and does nothing
// if there is none. It runs on the boot's critical path, where every process
// costs (tens of milliseconds each under UML or TCG), so it reads files with
// the shell's own `read` rather than cat and grep. Each @NAME@ is a word of
// the guest protocol, put in by with_protocol_words.
constexpr std::string_view kAgentTemplate = R"AGENT(#!/bin/sh
# kiln's guest agent: applies the instance's personality from the @SEED_LABEL@
# disk and tells the host when the system is up. Installed by kiln.
set -u
seed=/run/kiln-seed
state=/var/lib/kiln
no_nics=@NO_NICS_FLAG@
read -r cmdline < /proc/cmdline

# The device kiln names with @SEED_ARGUMENT@ (its kernel made the node before
# init ran), or else the disk labelled @SEED_LABEL@, waited for while udev
# brings up the disks if kiln started this machine.
find_seed() {
  for word in $cmdline; do
    case "$word" in @SEED_ARGUMENT@/dev/*) dev=${word#@SEED_ARGUMENT@}; [ -b "$dev" ] && return 0 ;; esac
  done
  tries=1
  case " $cmdline " in *" @INSTANCE_ARGUMENT@"*) tries=100 ;; esac
  while [ "$tries" -gt 0 ]; do
    dev=$(blkid -L @SEED_LABEL@ 2>/dev/null) && [ -n "$dev" ] && return 0
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] && sleep 0.1
  done
  return 1
}

mounted() {
  while read -r _ where _; do [ "$where" = "$1" ] && return 0; done < /proc/mounts
  return 1
}

# The names of the instances on the guest's socket networks, which have no
# DNS server: the lines on stdin replace those between kiln's marks.
update_hosts() {
  { sed '/^# kiln networks: begin$/,/^# kiln networks: end$/d' /etc/hosts
    echo '# kiln networks: begin'
    cat
    echo '# kiln networks: end'
  } > /etc/hosts.kiln && mv /etc/hosts.kiln /etc/hosts
}

apply_personality() {
  case " $cmdline " in
    *" @NO_NICS_ARGUMENT@ "*) mkdir -p "${no_nics%/*}" && : > "$no_nics" ;;
  esac
  find_seed || exit 0
  mounted "$seed" || { mkdir -p "$seed" && mount -o ro "$dev" "$seed"; } || exit 1
  if [ -s "$seed@SEED_HOSTNAME@" ]; then
    read -r name < "$seed@SEED_HOSTNAME@"
    echo "$name" > /etc/hostname
    echo "$name" > /proc/sys/kernel/hostname
    sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
    printf '127.0.1.1\t%s\n' "$name" >> /etc/hosts
  fi
  if [ -s "$seed@SEED_AUTHORIZED_KEYS@" ]; then
    mkdir -p /root/.ssh && chmod 700 /root/.ssh
    touch /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
    while IFS= read -r key; do
      grep -qxF "$key" /root/.ssh/authorized_keys || echo "$key" >> /root/.ssh/authorized_keys
    done < "$seed@SEED_AUTHORIZED_KEYS@"
  fi
  # Host keys kiln made for this instance, unless the machine has its own:
  # sshd then starts without waiting for ssh-keygen.
  [ -d "$seed@SEED_SSH_HOST_KEYS@" ] && [ -x /usr/sbin/sshd ] && [ ! -e /etc/ssh/ssh_host_ed25519_key ] &&
    cp -p "$seed@SEED_SSH_HOST_KEYS@/"* /etc/ssh/
  [ -d "$seed@SEED_FILES@" ] && cp -a "$seed@SEED_FILES@/." /
  [ -f "$seed@SEED_HOSTS@" ] && update_hosts < "$seed@SEED_HOSTS@"
  # NICs kiln gave a static address; systemd-networkd reads /run first.
  if [ -d "$seed@SEED_NETWORK@" ]; then
    mkdir -p /run/systemd/network && cp "$seed@SEED_NETWORK@/"* /run/systemd/network/
  fi
  # UML's user networking is SLIP through slirp: no Ethernet, fixed addresses.
  case " $cmdline " in
    *" @SLIRP_ARGUMENT@ "*)
      mkdir -p /run/systemd/network
      printf '[Match]\nName=eth0\n\n[Network]\nGateway=10.0.2.2\nDNS=10.0.2.3\n\n[Address]\nAddress=10.0.2.15/32\nPeer=10.0.2.2/32\n' \
        > /run/systemd/network/10-kiln-slirp.network ;;
  esac
  exit 0
}

# The instance's first-boot script, once. It runs before the serial getty
# starts (kiln-firstboot.service), as rc.local does: a getty starting hangs
# up its line, and every write of a script that still holds the console
# open from then on fails (seen: the lines after the getty's start lost).
run_firstboot() {
  [ -s "$seed@SEED_INSTANCE_ID@" ] || exit 0
  read -r id < "$seed@SEED_INSTANCE_ID@"
  if [ -x "$seed@SEED_FIRSTBOOT@" ] && [ ! -e "$state/firstboot-$id" ]; then
    mkdir -p "$state"
    "$seed@SEED_FIRSTBOOT@" > "$state/firstboot-$id.log" 2>&1
    echo "$?" > "$state/firstboot-$id"
  fi
  exit 0
}

# Writes a line of its own to a console, opening it afresh for each try: a
# getty starting meanwhile hangs the line up, failing a write on an open
# made before (a lost readiness line would leave kiln waiting).
say() {
  tries=50
  until printf '\n%s\n' "$2" > "/dev/$1"; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || return 1
    sleep 0.1
  done
}

report_ready() {
  [ -s "$seed@SEED_INSTANCE_ID@" ] || exit 0
  read -r id < "$seed@SEED_INSTANCE_ID@"
  mac=none
  for nic in /sys/class/net/*; do
    type=0
    read -r type < "$nic/type" 2>/dev/null
    [ "$type" = 1 ] || continue  # Ethernet only
    read -r mac < "$nic/address" && break
  done
  read -r host < /proc/sys/kernel/hostname
  machine_id=
  read -r machine_id < /etc/machine-id
  # Whose ssh host keys sshd has: kiln's (their fingerprints are the ones
  # kiln showed), the machine's own, or none.
  keys=@HOST_KEYS_NONE@
  if [ -s /etc/ssh/ssh_host_ed25519_key.pub ]; then
    keys=@HOST_KEYS_OWN@
    if [ -s "$seed@SEED_SSH_HOST_KEYS@/ssh_host_ed25519_key.pub" ]; then
      read -r ours < "$seed@SEED_SSH_HOST_KEYS@/ssh_host_ed25519_key.pub"
      read -r installed < /etc/ssh/ssh_host_ed25519_key.pub
      [ "$ours" = "$installed" ] && keys=@HOST_KEYS_KILN@
    fi
  fi
  # Whether `kiln exec` can reach this guest: its agent is installed (the
  # unit starts it early, long before this).
  exec=none
  [ -x @EXEC_AGENT_PATH@ ] && exec=@EXEC_VERSION@
  read -r consoles < /sys/class/tty/console/active
  # Every active console: UML always adds console=tty0 after kiln's ttyS0.
  for tty in $consoles; do
    say "$tty" "@READY_LINE@"
  done
}

# Before a snapshot is saved: everything on disk, the seed disk (this
# instance's) let go of, the page cache emptied, and the free memory
# zeroed, all of which keeps the saved memory small (qemu saves a zero page
# as a flag). The kernel does not clear pages it frees; dd's one buffer as
# large as the free memory, filled from /dev/zero, leaves zeros in them.
quiesce() {
  # A key being made now would come out the same in every clone: its
  # random bytes are drawn already. Each instance makes its own (resume).
  systemctl stop @RSA_KEYGEN_UNIT@ 2>/dev/null
  rm -f /etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_rsa_key.pub
  sync
  mounted "$seed" && umount "$seed"
  echo 3 > /proc/sys/vm/drop_caches
  available=0
  while read -r field kib _; do [ "$field" = MemAvailable: ] && available=$kib; done < /proc/meminfo
  zero_mib=$((available / 1024 - 64))
  [ "$zero_mib" -gt 0 ] && dd if=/dev/zero of=/dev/null bs="${zero_mib}M" count=1 2>/dev/null
  exit 0
}

# Whether a NIC has MAC address $1.
has_nic() {
  for nic in /sys/class/net/*/address; do
    read -r address < "$nic" && [ "$address" = "$1" ] && return 0
  done
  return 1
}

# Resumed from a snapshot, this machine becomes the instance whose seed disk
# it now has: its hostname, machine id, ssh host keys (the snapshot's go),
# keys, files and first-boot script; the host's entropy ($1, hex) mixed into
# the kernel's pool (the vmgenid change has made the kernel reseed too); and
# its NICs (their MACs follow), which the host has plugged in.
resume() {
  mounted "$seed" && umount "$seed"
  find_seed || exit 1
  blockdev --flushbufs "$dev" 2>/dev/null
  printf '%s' "${1:-}" > /dev/urandom
  shift
  rm -f /etc/ssh/ssh_host_*
  ( apply_personality ) || exit 1
  if [ -s "$seed@SEED_MACHINE_ID@" ]; then
    read -r id < "$seed@SEED_MACHINE_ID@"
    echo "$id" > /etc/machine-id
  fi
  # sshd re-executes itself on SIGHUP and so takes the new host keys,
  # without the second a restart through systemd takes under emulation
  # (a socket-activated sshd has no daemon: it reads them per connection).
  [ -r /run/sshd.pid ] && read -r sshd < /run/sshd.pid && kill -HUP "$sshd" 2>/dev/null
  # The network daemons, down in the snapshot's machine (it had no NIC),
  # start only now: DHCP's client id comes from the new machine id.
  if [ $# -gt 0 ]; then
    rm -f "$no_nics"
    systemctl --no-block start @NETWORK_DAEMONS@ 2>/dev/null
    tries=100
    for mac in "$@"; do
      until has_nic "$mac"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "no NIC with MAC address $mac showed up" >&2; exit 1; }
        sleep 0.05
      done
    done
  fi
  ( run_firstboot )
  exit 0
}

# Then: the host's clock ($1, unix seconds with a fraction), the readiness
# line, and the RSA host key this machine makes for itself.
ready_at() {
  date -s "@${1:-0}" > /dev/null
  ( find_seed && { mounted "$seed" || mount -o ro "$dev" "$seed"; } && report_ready )
  systemctl --no-block start @RSA_KEYGEN_UNIT@ 2>/dev/null
  exit 0
}

case "${1:-}" in
  personality) apply_personality ;;
  firstboot) run_firstboot ;;
  ready) report_ready ;;
  @HOSTS_COMMAND@) update_hosts ;;
  @QUIESCE_COMMAND@) quiesce ;;
  @RESUME_COMMAND@) shift; resume "$@" ;;
  @READY_AT_COMMAND@) shift; ready_at "$@" ;;
  *) echo "usage: kiln-agent personality|firstboot|ready|@HOSTS_COMMAND@|@QUIESCE_COMMAND@|@RESUME_COMMAND@|@READY_AT_COMMAND@" >&2; exit 2 ;;
esac
)AGENT";

constexpr std::string_view kPersonalityUnit = R"([Unit]
Description=kiln instance personality
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target network-pre.target systemd-networkd.socket systemd-networkd.service systemd-resolved.service ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kiln/kiln-agent personality

[Install]
WantedBy=sysinit.target
)";

// Before getty-pre.target: systemd's place for a unit that uses the console
// just before the gettys start (they are ordered after it, and after
// rc-local.service for the same reason). multi-user.target, and so the
// readiness signal, comes after the gettys, hence after this.
constexpr std::string_view kFirstbootUnit = R"([Unit]
Description=kiln first-boot script
After=kiln-personality.service network.target
Before=getty-pre.target
Wants=getty-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kiln/kiln-agent firstboot

[Install]
WantedBy=multi-user.target
)";

// DefaultDependencies=no keeps multi-user.target from ordering itself after
// this unit, which would be a cycle: this one runs once the target is up.
constexpr std::string_view kReadyUnit = R"([Unit]
Description=kiln readiness signal
DefaultDependencies=no
After=multi-user.target kiln-personality.service kiln-firstboot.service

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
constexpr std::string_view kCadGeneratorTemplate = R"(#!/bin/sh
# kiln: Ctrl-Alt-Del powers off where the host asked for it at boot.
read -r cmdline < /proc/cmdline
case " $cmdline " in
  *" @POWER_OFF_ARGUMENT@ "*) ln -sf /usr/lib/systemd/system/poweroff.target "$1/ctrl-alt-del.target" ;;
esac
)";

// The exec agent (guest/exec_agent.cc) serves `kiln exec` on the channel
// the kernel command line names, or under firmware an SMBIOS OEM string (in
// the DMI table: any x86 machine has one, and the agent ends at once,
// successfully, where neither names a channel). It starts before
// sysinit.target, so that a guest whose boot hangs later can still be looked
// into, and systemd starts it again should it fail.
constexpr std::string_view kExecUnit = R"([Unit]
Description=kiln exec agent
DefaultDependencies=no
ConditionKernelCommandLine=|@AGENT_ARGUMENT@
ConditionPathExists=|@DMI_TABLE@
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=@EXEC_AGENT_PATH@
Restart=on-failure
RestartSec=1

[Install]
WantedBy=sysinit.target
)";

constexpr std::string_view kExecAgentPath = "/usr/lib/kiln/kiln-exec-agent";

// `text` with each @NAME@ marker replaced by the protocol word it names.
std::string with_protocol_words(std::string_view text) {
  // The report as report_ready prints it: its values are in these shell
  // variables.
  const std::string ready_line = format_ready_line({"$id", "$host", "$machine_id", "$mac", "$keys", "$exec"});
  const std::string exec_version = std::to_string(kExecProtocolVersion);
  std::string network_daemons;
  for (std::string_view unit : kNetworkDaemons) network_daemons += (network_daemons.empty() ? "" : " ") + std::string(unit);
  const std::pair<std::string_view, std::string_view> words[] = {
      {"@INSTANCE_ARGUMENT@", kInstanceArgument},
      {"@SEED_ARGUMENT@", kSeedArgument},
      {"@SLIRP_ARGUMENT@", kSlirpArgument},
      {"@POWER_OFF_ARGUMENT@", kPowerOffArgument},
      {"@SEED_LABEL@", kSeedLabel},
      {"@SEED_INSTANCE_ID@", kSeedInstanceId},
      {"@SEED_HOSTNAME@", kSeedHostname},
      {"@SEED_AUTHORIZED_KEYS@", kSeedAuthorizedKeys},
      {"@SEED_SSH_HOST_KEYS@", kSeedSshHostKeys},
      {"@SEED_FIRSTBOOT@", kSeedFirstboot},
      {"@SEED_FILES@", kSeedFiles},
      {"@SEED_NETWORK@", kSeedNetwork},
      {"@SEED_HOSTS@", kSeedHosts},
      {"@HOSTS_COMMAND@", kAgentHostsCommand},
      {"@QUIESCE_COMMAND@", kAgentQuiesceCommand},
      {"@RESUME_COMMAND@", kAgentResumeCommand},
      {"@READY_AT_COMMAND@", kAgentReadyAtCommand},
      {"@SEED_MACHINE_ID@", kSeedMachineId},
      {"@RSA_KEYGEN_UNIT@", kSshKeygenRsaUnitName},
      {"@HOST_KEYS_KILN@", kHostKeysFromKiln},
      {"@HOST_KEYS_OWN@", kHostKeysOwn},
      {"@HOST_KEYS_NONE@", kHostKeysNone},
      {"@READY_LINE@", ready_line},
      {"@EXEC_AGENT_PATH@", kExecAgentPath},
      {"@EXEC_VERSION@", exec_version},
      {"@AGENT_ARGUMENT@", kAgentArgument.substr(0, kAgentArgument.size() - 1)},
      {"@DMI_TABLE@", kDmiTablePath},
      {"@NO_NICS_ARGUMENT@", kNoNicsArgument},
      {"@NO_NICS_FLAG@", kNoNicsFlag},
      {"@NETWORK_DAEMONS@", network_daemons},
  };
  std::string out(text);
  for (const auto& [marker, word] : words)
    for (size_t at = out.find(marker); at != std::string::npos; at = out.find(marker, at + word.size()))
      out.replace(at, marker.size(), word);
  return out;
}

Result<> write_file(Ext4Image& fs, const std::string& path, std::string_view text, uint32_t mode, int64_t mtime) {
  KILN_TRY(make_parents(fs, path, mtime));
  return fs.write_file(path, text, Ext4Attributes{mode, 0, 0, mtime});
}

}  // namespace


std::string guest_agent_script() { return with_protocol_words(kAgentTemplate); }

std::string exec_agent_file_name(std::string_view architecture) {
  return architecture == host_architecture() ? "kiln-exec-agent" : fmt::format("kiln-exec-agent-{}", architecture);
}

Result<std::filesystem::path> find_exec_agent_binary(std::string_view architecture) {
  const char* given = std::getenv("KILN_EXEC_AGENT");
  if (given && architecture == host_architecture()) return std::filesystem::path(given);
  KILN_ASSIGN(std::filesystem::path self, this_program());
  std::error_code ec;
  // Beside kiln in a build directory; under PREFIX/lib/kiln once installed.
  const std::string name = exec_agent_file_name(architecture);
  for (const std::filesystem::path& candidate :
       {self.parent_path() / name, self.parent_path().parent_path() / "lib/kiln" / name})
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
  return fail(ErrorKind::kMissingTool, "{} is not beside {} nor in ../lib/kiln: build it (make{}) or install kiln with it",
              name, self.string(),
              architecture == host_architecture() ? "" : ", with the cross compiler scripts/install-deps.sh installs");
}

Result<bool> install_exec_agent(Ext4Image& fs, std::string_view architecture, int64_t mtime) {
  auto binary = find_exec_agent_binary(architecture);
  // Another architecture's agent comes from a cross compiler the build may
  // not have had: its images bake without one, and say so.
  if (!binary && architecture != host_architecture()) return false;
  if (!binary) return std::unexpected(std::move(binary).error());
  KILN_ASSIGN(std::string bytes, read_file(*binary));
  KILN_TRY(write_file(fs, std::string(kExecAgentPath), bytes, 0755, mtime));
  KILN_TRY(install_unit(fs, "kiln-exec.service", with_protocol_words(kExecUnit), mtime));
  return true;
}

Result<> install_guest_agent(Ext4Image& fs, int64_t mtime) {
  KILN_TRY(write_file(fs, std::string(kAgentScriptPath), guest_agent_script(), 0755, mtime));
  KILN_TRY(install_unit(fs, "kiln-personality.service", kPersonalityUnit, mtime));
  KILN_TRY(install_unit(fs, "kiln-firstboot.service", kFirstbootUnit, mtime));
  KILN_TRY(write_file(fs, "/usr/lib/systemd/system-generators/kiln-cad-generator",
                      with_protocol_words(kCadGeneratorTemplate), 0755, mtime));
  return install_unit(fs, "kiln-ready.service", kReadyUnit, mtime);
}

}  // namespace kiln
