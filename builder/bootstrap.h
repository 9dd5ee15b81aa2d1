// Bootstrap: the first stage of a bake. It produces the rootfs archive that
// everything after it streams from: a tar written by mmdebstrap or by
// debootstrap (whose tree is packed into a deterministic tar), or an
// existing archive named by bootstrap.from (a path, or a URI fetched into the
// cache).
#pragma once

#include <filesystem>

#include "base/error.h"
#include "base/reporter.h"
#include "base/subprocess.h"
#include "builder/plan.h"

namespace kiln {

// Runs the recipe's bootstrap tool through `runner` and writes the rootfs
// tar to `out_tar`. `work_dir` holds temporary trees (debootstrap); it must
// be empty.
Result<> bootstrap_rootfs(const Plan& plan, const std::filesystem::path& out_tar,
                          const std::filesystem::path& work_dir, Reporter& reporter, CommandRunner& runner);

// For bootstrap.from: the local archive path (resolved against the recipe's
// directory), or "" when it is a remote URI that must be downloaded.
std::filesystem::path local_import_path(const Recipe& recipe);

// The environment that makes programs honour the plan's timestamp.
std::vector<std::string> reproducible_env(const Plan& plan);

}  // namespace kiln
