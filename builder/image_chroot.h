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
#include "base/subprocess.h"
#include "base/tree_root.h"
#include "builder/plan.h"

namespace kiln {

// Applies plan.in_image_steps to the rootfs in `source_archive`, then
// plan.storage_support (packages, their configuration, a rebuilt
// initramfs), writing the result to `out_tar`. `work_dir` (empty, on a
// filesystem with room for the unpacked tree) is where the tree lives
// meanwhile. Needs root: the programs run chrooted.
Result<> run_in_image_steps(const Plan& plan, const std::filesystem::path& source_archive,
                            const std::filesystem::path& out_tar, const std::filesystem::path& work_dir,
                            Reporter& reporter, CommandRunner& runner);

// The same steps on a tree already unpacked, each of the image's programs
// run through `runner` (chrooted into the tree when it is the system's):
// the files kiln puts in place for the stage (resolv.conf, a policy-rc.d
// that starts no service) are there while they run and gone after, and
// what package runs leave behind is cleared.
Result<> customize_in_image(const Plan& plan, const TreeRoot& tree, CommandRunner& runner, Reporter& reporter);

}  // namespace kiln
