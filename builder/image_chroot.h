// ImageChroot: the in-image customisation stage. Some steps must run the
// image's own programs (apt-get for customize.packages, locale-gen, `run`
// commands), so the rootfs archive is unpacked into a private directory and
// the programs run chrooted there, in a private mount namespace: the /proc,
// /sys and /dev they need are mounted where only they can see them, and
// vanish with them. The tree is then packed back into a deterministic tar
// for the cache. Nothing of the build host is left in the image.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "builder/plan.h"

namespace kiln {

// Applies plan.in_image_steps to the rootfs in `source_archive`, then
// plan.storage_support (packages, their configuration, a rebuilt
// initramfs), writing the result to `out_tar`. `work_dir` (empty, on a filesystem with room for the
// unpacked tree) is where the tree lives meanwhile.
Result<> run_in_image_steps(const Plan& plan, const std::filesystem::path& source_archive,
                            const std::filesystem::path& out_tar,
                            const std::filesystem::path& work_dir, Reporter& reporter);

}  // namespace kiln
