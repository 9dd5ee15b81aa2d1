#include "builder/initramfs_deferral.h"

#include <algorithm>

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

}  // namespace

Result<std::vector<std::string>> make_missing_initramfs(const std::filesystem::path& rootfs, CommandRunner& runner) {
  std::vector<Kernel> kernels = kernels_without_initramfs(rootfs / "boot");
  std::error_code ec;
  const bool initramfs_tools = std::filesystem::exists(rootfs / "usr/sbin/update-initramfs", ec);
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
