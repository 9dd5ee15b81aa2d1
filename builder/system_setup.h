// SystemSetup: what kiln does to every image after the recipe's own
// customisation, so that it boots anywhere as a fresh machine:
//  - /etc/fstab from the storage layout, by UUID, and /etc/crypttab;
//  - DHCP on the first NIC through systemd-networkd;
//  - an empty /etc/machine-id, so each instance gets its own at first boot;
//  - no ssh host keys, and a unit that makes them at first boot, before sshd;
//  - kiln's guest agent, which applies an instance's personality at boot and
//    signals readiness (builder/guest_agent.h).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "builder/plan.h"
#include "formats/ext4/ext4_image.h"

namespace kiln {

// A filesystem or swap area besides the root one (an LVM volume).
struct MountEntry {
  std::string uuid;
  std::string mountpoint;  // "" for swap
  FilesystemType type = FilesystemType::kExt4;
};

struct FilesystemLayout {
  FilesystemType root_type = FilesystemType::kExt4;
  std::string root_uuid;                  // of the root filesystem
  std::optional<std::string> esp_volume;  // "XXXX-XXXX" when there is an ESP
  std::vector<MountEntry> volumes;
  std::string crypttab;  // /etc/crypttab; "" when nothing is encrypted
};

// The unit that makes the slow RSA host key after boot; the guest agent
// stops it before a snapshot is saved and starts it in each resumed clone.
inline constexpr std::string_view kSshKeygenRsaUnitName = "kiln-ssh-keygen-rsa.service";

// The network daemons that a machine kiln boots without a NIC keeps down
// (builder/guest_agent.h: the no-NICs flag), and that the agent of an
// instance resumed from a snapshot starts once its NICs are in.
inline constexpr std::array<std::string_view, 3> kNetworkDaemons = {
    "systemd-networkd.socket", "systemd-networkd.service", "systemd-resolved.service"};

// Returns notes worth telling the user (e.g. "no systemd-networkd: no DHCP").
Result<std::vector<std::string>> apply_system_setup(Ext4Image& fs, const Plan& plan,
                                                    const FilesystemLayout& layout);

// The fstab text for a layout.
std::string fstab_for(const FilesystemLayout& layout);

}  // namespace kiln
