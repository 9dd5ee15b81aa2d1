// ForeignEmulation: what lets a bake run another architecture's programs
// (mmdebstrap's package scripts, customize.run) on this host: a qemu-user
// interpreter registered with the kernel's binfmt_misc. Debian's
// qemu-user-static ships each registration as a binfmt.d file, which
// systemd-binfmt loads at boot; where nothing did (PID 1 is not systemd),
// kiln mounts binfmt_misc and registers the one entry the image needs,
// with qemu's "F" flag, so that it also runs inside the image's chroot.
#pragma once

#include <filesystem>
#include <functional>

#include "base/architecture.h"
#include "base/error.h"
#include "base/reporter.h"

namespace kiln {

// The host as the check sees it; tests give scratch directories.
struct BinfmtHost {
  std::filesystem::path binfmt_misc = "/proc/sys/fs/binfmt_misc";
  std::filesystem::path definitions = "/usr/lib/binfmt.d";
  // Mounts binfmt_misc at binfmt_misc; false when it could not.
  std::function<bool()> mount;
  static BinfmtHost real();
};

// Succeeds when this host can run `arch`'s programs, registering its
// qemu-user entry when it is installed but not registered. The error names
// the package to install, or what the host lacks.
Result<> ensure_foreign_emulation(const Architecture& arch, const BinfmtHost& host, Reporter& reporter);

}  // namespace kiln
