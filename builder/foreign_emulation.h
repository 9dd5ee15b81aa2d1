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
  std::filesystem::path interpreters = "/";  // where a registration's interpreter path starts
  // Mounts binfmt_misc at binfmt_misc; false when it could not.
  std::function<bool()> mount;
  // Whether the kernel runs the programs of an architecture whose native_on
  // is the host's (base/architecture.h) itself.
  std::function<bool(const Architecture&)> runs_natively;
  static BinfmtHost real();
};

// Whether this host's kernel runs an i386 program itself (an x86-64 kernel
// built with IA32 emulation), or through a binfmt_misc entry registered for
// it: it runs one, of 93 bytes, that exits 0.
bool kernel_runs_i386();

// Succeeds when this host can run `arch`'s programs, registering its
// qemu-user entry when it is installed but not registered. The error names
// the package to install, or what the host lacks.
Result<> ensure_foreign_emulation(const Architecture& arch, const BinfmtHost& host, Reporter& reporter);

}  // namespace kiln
