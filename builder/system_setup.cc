#include "builder/system_setup.h"

#include <algorithm>
#include <cstdint>

#include "builder/guest_agent.h"
#include "builder/offline_customizer.h"
#include "builder/systemd_units.h"
#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

constexpr std::string_view kNetworkFile =
    "# Written by kiln: DHCP on every Ethernet interface, and the search\n"
    "# domain it offers (a kiln network's), so that instances' names resolve.\n"
    "[Match]\n"
    "Type=ether\n"
    "Name=en* eth*\n"
    "\n"
    "[Network]\n"
    "DHCP=yes\n"
    "\n"
    "[DHCPv4]\n"
    "UseDomains=yes\n";

// Ed25519 and ECDSA keys take milliseconds to make, RSA keys seconds (more
// under emulation): sshd starts with the quick ones, and the RSA key follows
// once the system is up and has said so, without holding up the boot.
constexpr std::string_view kSshKeygenUnit =
    "# Written by kiln: images ship without ssh host keys, so that no two\n"
    "# machines share them; this makes a machine's own keys at first boot.\n"
    "[Unit]\n"
    "Description=Generate SSH host keys\n"
    "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n"
    "Before=ssh.service ssh.socket\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    "ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key\n"
    "ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N \"\" -f /etc/ssh/ssh_host_ecdsa_key\n"
    "RemainAfterExit=yes\n"
    "\n"
    "[Install]\n"
    "WantedBy=ssh.service multi-user.target\n";

constexpr std::string_view kSshKeygenRsaUnit =
    "# Written by kiln: the slow RSA host key, after boot. sshd offers it from its next start:\n"
    "# reloading sshd now would refuse connections for a moment after the guest reported ready.\n"
    "[Unit]\n"
    "Description=Generate the SSH RSA host key\n"
    "ConditionPathExists=!/etc/ssh/ssh_host_rsa_key\n"
    "DefaultDependencies=no\n"
    "After=multi-user.target kiln-ssh-keygen.service kiln-ready.service\n"
    "\n"
    "[Service]\n"
    "Type=oneshot\n"
    "Nice=10\n"
    "ExecStart=/usr/bin/ssh-keygen -A\n"
    "\n"
    "[Install]\n"
    "WantedBy=multi-user.target\n";

Result<bool> exists(Ext4Image& fs, std::string_view path) {
  KILN_ASSIGN(auto st, fs.stat(path));
  return st.has_value();
}

Result<> write(Ext4Image& fs, std::string_view path, std::string_view text, uint32_t mode, int64_t mtime) {
  KILN_TRY(make_parents(fs, path, mtime));
  return fs.write_file(path, text, Ext4Attributes{mode, 0, 0, mtime});
}

// A machine kiln boots without a NIC has no use for the network daemons, and
// under UML or TCG starting them is CPU time the boot waits for: measured
// under UML, 0.6 s of a 7.6 s boot to ready. The condition is the guest
// agent's flag, made at boot from kiln's word on the kernel command line, so
// a machine booted by anything else, or with a NIC, starts them as Debian
// would; and an instance resumed from a snapshot (whose machine had no NIC)
// starts them once its NICs are plugged in.
Result<> skip_network_without_nics(Ext4Image& fs, const Plan& plan) {
  const std::string dropin = fmt::format(
      "# Written by kiln: nothing to do on a machine kiln booted without a NIC.\n"
      "[Unit]\nConditionPathExists=!{}\n",
      kNoNicsFlag);
  std::vector<std::string_view> units(kNetworkDaemons.begin(), kNetworkDaemons.end());
  units.push_back("systemd-networkd-wait-online.service");
  for (std::string_view unit : units) {
    KILN_ASSIGN(std::string found, find_unit(fs, unit));
    if (found.empty()) continue;
    KILN_TRY(write(fs, fmt::format("/etc/systemd/system/{}.d/kiln-no-nics.conf", unit), dropin, 0644, plan.timestamp));
  }
  return {};
}

Result<> setup_network(Ext4Image& fs, const Plan& plan, std::vector<std::string>& notes) {
  KILN_ASSIGN(std::string unit, find_unit(fs, "systemd-networkd.service"));
  if (unit.empty()) {
    notes.push_back("the image has no systemd-networkd: no DHCP set up");
    return {};
  }
  KILN_TRY(write(fs, "/etc/systemd/network/80-kiln-dhcp.network", kNetworkFile, 0644, plan.timestamp));
  KILN_TRY(enable_unit(fs, "systemd-networkd.service", plan.timestamp));
  return skip_network_without_nics(fs, plan);
}

Result<> reset_machine_id(Ext4Image& fs, const Plan& plan) {
  KILN_TRY(write(fs, "/etc/machine-id", "", 0444, plan.timestamp));
  KILN_ASSIGN(auto dbus_id, fs.stat("/var/lib/dbus/machine-id"));
  if (dbus_id && dbus_id->type != EntryType::kSymlink) {
    KILN_TRY(fs.remove("/var/lib/dbus/machine-id"));
    KILN_TRY(fs.make_symlink("/var/lib/dbus/machine-id", "/etc/machine-id",
                             Ext4Attributes{0777, 0, 0, plan.timestamp}));
  }
  return {};
}

Result<> reset_ssh_host_keys(Ext4Image& fs, const Plan& plan) {
  KILN_ASSIGN(bool has_sshd, exists(fs, "/usr/sbin/sshd"));
  if (!has_sshd) return {};
  KILN_ASSIGN(auto names, fs.list_directory("/etc/ssh"));
  for (const std::string& name : names)
    if (name.starts_with("ssh_host_")) KILN_TRY(fs.remove("/etc/ssh/" + name));
  KILN_TRY(install_unit(fs, "kiln-ssh-keygen.service", kSshKeygenUnit, plan.timestamp));
  return install_unit(fs, kSshKeygenRsaUnitName, kSshKeygenRsaUnit, plan.timestamp);
}

// systemd's first-boot update units (ldconfig, sysusers, hwdb, the journal
// catalog: ConditionNeedsUpdate=) run when /usr is newer than the stamps in
// /etc and /var. The package manager did their work at bake time, so the
// stamps say so; a package installed later makes /usr newer and they run
// again. Under UML, systemd-sysusers alone took 0.5-1 s of a first boot.
Result<> stamp_updates_done(Ext4Image& fs) {
  KILN_ASSIGN(auto usr, fs.stat("/usr"));
  if (!usr || usr->type != EntryType::kDirectory) return {};
  std::string stamp = fmt::format(
      "# Written by kiln: the image was set up when /usr last changed.\nTIMESTAMP_NSEC={}\n",
      usr->mtime * 1'000'000'000);
  for (const char* dir : {"/etc", "/var"}) {
    KILN_ASSIGN(auto found, fs.stat(dir));
    if (found) KILN_TRY(write(fs, std::string(dir) + "/.updated", stamp, 0644, usr->mtime));
  }
  return {};
}

}  // namespace

std::string fstab_for(const FilesystemLayout& layout) {
  std::string text = "# /etc/fstab: written by kiln from the recipe's storage layout.\n";
  text += fmt::format("UUID={}\t/\t{}\terrors=remount-ro\t0\t1\n", layout.root_uuid, name_of(layout.root_type));
  // Parents before children (/var before /var/log), then swap.
  std::vector<MountEntry> volumes = layout.volumes;
  std::stable_sort(volumes.begin(), volumes.end(), [](const MountEntry& a, const MountEntry& b) {
    auto depth = [](const MountEntry& m) {
      return m.mountpoint.empty() ? SIZE_MAX : static_cast<size_t>(std::count(m.mountpoint.begin(), m.mountpoint.end(), '/'));
    };
    return depth(a) < depth(b);
  });
  for (const MountEntry& volume : volumes) {
    if (volume.type == FilesystemType::kSwap)
      text += fmt::format("UUID={}\tnone\tswap\tsw\t0\t0\n", volume.uuid);
    else
      text += fmt::format("UUID={}\t{}\t{}\tdefaults\t0\t2\n", volume.uuid, volume.mountpoint, name_of(volume.type));
  }
  if (layout.esp_volume) {
    // Mounted on first access, and optional: the same image also boots from
    // root.img alone (UML, direct kernel boot), where there is no ESP.
    text += fmt::format("UUID={}\t/boot/efi\tvfat\tumask=0077,nofail,x-systemd.automount,x-systemd.device-timeout=5s\t0\t2\n",
                        *layout.esp_volume);
  }
  return text;
}

Result<std::vector<std::string>> apply_system_setup(Ext4Image& fs, const Plan& plan,
                                                    const FilesystemLayout& layout) {
  std::vector<std::string> notes;
  KILN_TRY(write(fs, "/etc/fstab", fstab_for(layout), 0644, plan.timestamp));
  if (!layout.crypttab.empty()) KILN_TRY(write(fs, "/etc/crypttab", layout.crypttab, 0644, plan.timestamp));
  if (layout.esp_volume) {
    KILN_ASSIGN(bool has_efi_dir, exists(fs, "/boot/efi"));
    if (!has_efi_dir) {
      KILN_TRY(make_parents(fs, "/boot/efi", plan.timestamp));
      KILN_TRY(fs.make_directory("/boot/efi", Ext4Attributes{0755, 0, 0, plan.timestamp}));
    }
  }
  KILN_TRY(setup_network(fs, plan, notes));
  KILN_TRY(reset_machine_id(fs, plan));
  KILN_TRY(reset_ssh_host_keys(fs, plan));
  KILN_ASSIGN(std::string systemd, find_unit(fs, "multi-user.target"));
  if (systemd.empty()) {
    notes.push_back("the image has no systemd: kiln's guest agent (personality, readiness) is not installed");
  } else {
    KILN_TRY(install_guest_agent(fs, plan.timestamp));
    const std::string architecture(plan.arch->dpkg);
    KILN_ASSIGN(bool exec_agent, install_exec_agent(fs, architecture, plan.timestamp));
    if (!exec_agent)
      notes.push_back("no exec agent for " + architecture + " images in this kiln: `kiln exec` will not reach them");
    KILN_TRY(stamp_updates_done(fs));
  }
  return notes;
}

}  // namespace kiln
