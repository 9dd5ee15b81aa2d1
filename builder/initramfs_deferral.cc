#include "builder/initramfs_deferral.h"

#include <algorithm>

#include "base/files.h"

namespace kiln {
namespace {

struct Kernel {
  std::string version;
  std::string image;  // /boot/vmlinuz-VERSION, or vmlinux- on some architectures
  bool operator<(const Kernel& other) const { return version < other.version; }
};

// The kernels in /boot without an initrd.img-VERSION.
std::vector<Kernel> kernels_without_initramfs(const std::filesystem::path& boot) {
  std::vector<Kernel> kernels;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(boot, ec)) {
    std::string name = entry.path().filename().string();
    for (std::string_view prefix : {"vmlinuz-", "vmlinux-"}) {
      if (!name.starts_with(prefix)) continue;
      std::string version = name.substr(prefix.size());
      if (!std::filesystem::exists(boot / ("initrd.img-" + version), ec)) kernels.push_back({version, "/boot/" + name});
    }
  }
  std::sort(kernels.begin(), kernels.end());
  return kernels;
}

// Runs a program in the tree as apt runs maintainer scripts there: with
// its PATH (DPkg::Path), without mmdebstrap's TMPDIR and APT_CONFIG (host
// paths) and without the INITRD=No that deferred this work.
Result<> run_in_tree(const std::filesystem::path& rootfs, std::vector<std::string> argv, CommandRunner& runner,
                     const std::string& what) {
  Command command;
  command.argv = {"env", "--unset=TMPDIR", "--unset=APT_CONFIG", "--unset=INITRD", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "chroot",
                  rootfs.string()};
  command.argv.insert(command.argv.end(), argv.begin(), argv.end());
  auto ran = runner.run(command);
  if (!ran) return std::unexpected(std::move(ran).error().with_context(what));
  return {};
}

// initramfs-tools' MODULES=list takes only /etc/initramfs-tools/modules,
// and loads each of those at boot whether its device is there or not
// (measured under TCG with ten modules: no faster to ready than
// MODULES=most). A hook's manual_add_modules puts them in without loading
// them, and udev loads those the machine has devices for: about 2 s faster.
Result<> configure_initramfs_modules(const std::filesystem::path& rootfs, const std::vector<std::string>& modules) {
  const std::filesystem::path etc = rootfs / "etc/initramfs-tools";
  for (const char* dir : {"conf.d", "hooks"}) {
    std::error_code ec;
    std::filesystem::create_directories(etc / dir, ec);
    if (ec) return fail_errno("cannot create", (etc / dir).string(), ec.value());
  }
  KILN_TRY(write_file_atomic(etc / "conf.d/kiln-modules.conf",
                             "# Written by kiln (bootstrap.initramfs_modules): the initramfs carries the modules\n"
                             "# that hooks/kiln-modules adds, and no others.\n"
                             "MODULES=list\n"));
  std::string names;
  for (const std::string& module : modules) names += " " + module;
  return write_file_atomic(etc / "hooks/kiln-modules",
                           "#!/bin/sh\n"
                           "# Written by kiln (bootstrap.initramfs_modules): these modules and what they depend on;\n"
                           "# udev loads each when its device appears.\n"
                           "[ \"$1\" = prereqs ] && exit 0\n"
                           ". /usr/share/initramfs-tools/hook-functions\n"
                           "manual_add_modules" + names + "\n",
                           0755);
}

}  // namespace

Result<std::vector<std::string>> make_missing_initramfs(const std::filesystem::path& rootfs, CommandRunner& runner,
                                                        const std::vector<std::string>& modules) {
  std::vector<Kernel> kernels = kernels_without_initramfs(rootfs / "boot");
  std::error_code ec;
  const bool initramfs_tools = std::filesystem::exists(rootfs / "usr/sbin/update-initramfs", ec);
  if (!modules.empty()) {
    if (!initramfs_tools)
      return fail(ErrorKind::kBadInput, "bootstrap.initramfs_modules: the image has no initramfs-tools (kiln "
                                        "chooses the modules of initramfs-tools only)");
    KILN_TRY(configure_initramfs_modules(rootfs, modules));
  }
  const bool dracut = std::filesystem::exists(rootfs / "usr/bin/dracut", ec);
  const bool symlinks = std::filesystem::exists(rootfs / "usr/bin/linux-update-symlinks", ec);
  std::vector<std::string> made;
  if (!initramfs_tools && !dracut) return made;
  for (const Kernel& kernel : kernels) {
    const std::string what = "the initramfs of " + kernel.version;
    if (initramfs_tools) {
      KILN_TRY(run_in_tree(rootfs, {"update-initramfs", "-c", "-k", kernel.version}, runner, what));
    } else {
      KILN_TRY(run_in_tree(rootfs, {"dracut", "-q", "--force", "/boot/initrd.img-" + kernel.version, kernel.version},
                           runner, what));
    }
    if (symlinks)
      KILN_TRY(run_in_tree(rootfs, {"linux-update-symlinks", "install", kernel.version, kernel.image}, runner,
                           "the /initrd.img link of " + kernel.version));
    made.push_back(kernel.version);
  }
  return made;
}

}  // namespace kiln
