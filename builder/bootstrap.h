// Bootstrap: the first stage of a bake. It produces the rootfs archive that
// everything after it streams from: a tar written by mmdebstrap or by
// debootstrap (whose tree is packed into a deterministic tar), or an
// existing archive named by bootstrap.from (a path, or a URI fetched into the
// cache).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "base/subprocess.h"
#include "builder/plan.h"

namespace kiln {

// kiln's part in an mmdebstrap bootstrap: mmdebstrap's hooks call this
// program back (`KILN bootstrap-hook POINT [--cache DIR] ROOTFS`) at
//   setup      fill apt's archives from the package cache (builder/package_cache.h)
//   customize  make each kernel's initramfs once (builder/initramfs_deferral.h:
//              mmdebstrap runs with INITRD=No); keep what apt downloaded
// (debootstrap has no such hooks: its bakes download every package and make
// the initramfs as often as the packages ask.)
struct BootstrapHooks {
  std::filesystem::path kiln;           // the program the hooks call back
  std::filesystem::path package_cache;  // "": none (--no-cache)
};

// What the bake lends the bootstrap tool beyond the plan.
struct BootstrapResources {
  std::optional<BootstrapHooks> hooks;
  // Where mmdebstrap builds the tree ($TMPDIR); "" for its default.
  std::filesystem::path workspace;
};

// A tmpfs to build the tree in, when the host has the room: dpkg syncs
// every file it unpacks, which costs half of a bootstrap on a VM's disk and
// nothing in RAM; the tree is only read back into the tar. "" when
// /dev/shm is not a tmpfs or either it or the host's available memory is
// short of `tree_bytes` with a margin.
std::filesystem::path memory_workspace(uint64_t tree_bytes);

// Runs the recipe's bootstrap tool through `runner` and writes the rootfs
// tar to `out_tar`. `work_dir` holds temporary trees (debootstrap); it must
// be empty.
Result<> bootstrap_rootfs(const Plan& plan, const std::filesystem::path& out_tar,
                          const std::filesystem::path& work_dir, Reporter& reporter, CommandRunner& runner,
                          const BootstrapResources& resources = {});

// What `kiln bootstrap-hook` does at one of the points above, for the
// rootfs mmdebstrap is building. The setup point runs `apt-get update`
// first (mmdebstrap then skips its own), so that the signed index is there
// to say which cached files may be served. The customize point makes the
// initramfs, with only `initramfs_modules` when there are any.
struct BootstrapHookReport {
  std::vector<std::string> notes;
  std::vector<std::string> warnings;
};
Result<BootstrapHookReport> run_bootstrap_hook(std::string_view point, const std::filesystem::path& package_cache,
                                               const std::vector<std::string>& initramfs_modules,
                                               const std::filesystem::path& rootfs, CommandRunner& runner);

// For bootstrap.from: the local archive path (resolved against the recipe's
// directory), or "" when it is a remote URI that must be downloaded.
std::filesystem::path local_import_path(const Recipe& recipe);

// The environment that makes programs honour the plan's timestamp.
std::vector<std::string> reproducible_env(const Plan& plan);

}  // namespace kiln
